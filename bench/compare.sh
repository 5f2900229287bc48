#!/usr/bin/env bash
# compare.sh: mailedge's gateway against HAProxy, nginx (stream and mail)
# and stunnel on this machine, in front of the same backend, with the same
# ECDSA P-256 certificate, TLS 1.3, X25519 and AES-128-GCM.
#
#   bench/compare.sh            # full run: 3 repetitions, about 14 minutes on 2 cores
#   QUICK=1 bench/compare.sh    # development run: short tests, about 2-3 minutes
#
# gateway-login is the gateway taking the login at the edge as nginx mail
# does (one implicit-TLS IMAP listener with auth, -auth-http to the same
# auth_http responder as nginx mail's); gateway is the TLS offload path.
# gateway-redis is that path as one replica of a fleet (issue 16): every
# connection admitted through Redis (a private redis-server on loopback;
# connection rate and in-flight limits set too high to refuse, so that each
# connection costs its two round trips) and the session-ticket keys read
# from Redis. gofloor (bench/gofloor) is the Go floor: tls.Listen and two
# io.Copy, what the layers above crypto/tls are measured against.
#
# SNI passthrough (issue 17): gateway, haproxy and nginx-stream each have a
# passthrough port of their own (PASS) that sends ClientHellos naming
# mail.tenant.example unread to a tenant backend terminating TLS itself
# (mailbench serve -imaps, with its own certificate): the gateway by
# -passthrough, HAProxy by req_ssl_sni, nginx stream by ssl_preread. Other
# names on that port are terminated (the gateway in process; HAProxy and
# nginx through their own implicit-TLS port). mailbench's full test with
# -tls passthrough verifies the tenant's certificate, so a connection the
# proxy terminated instead fails; its rows are "full imap passthrough".
#
# The clients people really use (issue 19), on gateway, gofloor, haproxy
# and nginx-stream: mailbench -client mlkem (Go's default groups, the
# X25519MLKEM768 hybrid first; OpenSSL 3.0's HAProxy and nginx answer it
# with X25519), -client tls12 (the peers allow TLS 1.2 with ECDHE-AES-GCM
# for it; TLS 1.3 clients are unaffected) and -client rsa (an RSA-2048
# certificate for rsa.example.com, on a port of each proxy's own, RSAP,
# since nginx 1.22's stream module cannot pick a certificate by name). And
# how cost grows: full@64 next to seq (1 client) and full (CONC), rtt@16
# (16 sessions in closed-loop NOOP), idle at 1000, IDLE and IDLEMAX (the
# most the descriptor limit allows: each session holds two of the proxy's
# descriptors) sessions, idlefetch (IDLE sessions, each downloading 1 MiB,
# then sitting in IDLE; with ML-KEM clients, 1000 of them) and
# idleappend@1000 (each uploading 1 MiB with APPEND, the direction whose
# records crypto/tls buffers, then in IDLE). Each memory test runs on a freshly started proxy, so
# that no earlier test's heap hides its sessions.
#
# Knobs (environment): REPS, DUR (per timed test), IDLE (sessions held),
# HOLD (how long idle sessions are held while the proxy's CPU is read),
# IDLEMAX (the largest idle test),
# CONC (concurrency), OUT (results folder), TARGETS (subset, space-separated),
# PORT_SHIFT (subtracted from every port, so that two runs can share the
# machine for a functional check; never for numbers), BASE (a git revision: adds the target gateway-base, the gateway built at
# that revision with the gateway's listeners, for an A/B of a change in one run).
# The runs are interleaved (A B C ... A B C ...), each proxy freshly started
# for its run, and the summary gives medians, min–max and gateway/peer
# ratios. Needs root for apt-get if the peers are missing. Not run by CI.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
if [[ -n "${QUICK:-}" ]]; then
	: "${REPS:=3}" "${DUR:=500ms}" "${IDLE:=300}" "${HOLD:=1s}" "${IDLEMAX:=600}"
else
	: "${REPS:=3}" "${DUR:=3s}" "${IDLE:=5000}" "${HOLD:=2s}" "${IDLEMAX:=$((($(ulimit -Hn) - 200) / 2))}"
fi
: "${CONC:=8}" "${TARGETS:=gateway gateway-login gateway-redis gofloor haproxy nginx-stream nginx-mail stunnel}"
OUT=${OUT:-$(mktemp -d /tmp/mailedge-bench.XXXXXX)}
mkdir -p "$OUT"
DIR=$OUT/run
mkdir -p "$DIR"

# Ports: backend 31xxx; each proxy its own block, all below the kernel's
# ephemeral range (32768 and up here), so no load client's socket can hold
# a port a proxy is about to listen on.
S=${PORT_SHIFT:-0}
BACKEND_IMAP=127.0.0.1:$((31143 - S)) BACKEND_SMTP=127.0.0.1:$((31025 - S)) BACKEND_POP3=127.0.0.1:$((31110 - S))
BACKEND_AUTH=127.0.0.1:$((31180 - S)) REDIS_PORT=$((31379 - S)) BACKEND_IMAPS=127.0.0.1:$((31993 - S)) TENANT=mail.tenant.example
declare -A IMAPS=([gateway]=30993 [haproxy]=29993 [nginx-stream]=28993 [nginx-mail]=27993 [stunnel]=26993 [gateway-base]=25993 [gateway-login]=24993 [gateway-redis]=23993 [gofloor]=22993)
declare -A SMTPS=([gateway]=30465 [haproxy]=29465 [nginx-stream]=28465 [stunnel]=26465 [gateway-base]=25465 [gofloor]=22465)
declare -A PASS=([gateway]=30992 [haproxy]=29992 [nginx-stream]=28992 [gateway-base]=25992)
declare -A RSAP=([gateway]=30994 [haproxy]=29994 [nginx-stream]=28994 [gofloor]=22994 [gateway-base]=25994)
for k in "${!IMAPS[@]}"; do IMAPS[$k]=$((IMAPS[$k] - S)); done
for k in "${!SMTPS[@]}"; do SMTPS[$k]=$((SMTPS[$k] - S)); done
for k in "${!PASS[@]}"; do PASS[$k]=$((PASS[$k] - S)); done
for k in "${!RSAP[@]}"; do RSAP[$k]=$((RSAP[$k] - S)); done
if [[ -n ${BASE:-} ]]; then TARGETS="$TARGETS gateway-base"; fi
GW_IMAP=$((30143 - S)) GW_SUBMISSION=$((30587 - S)) GW_POP3=$((30110 - S)) GW_POP3S=$((30995 - S))

log() { printf '%s %s\n' "$(date +%T)" "$*" >&2; }

install_peers() {
	local missing=()
	command -v haproxy >/dev/null || missing+=(haproxy)
	command -v stunnel4 >/dev/null || command -v stunnel >/dev/null || missing+=(stunnel4)
	command -v nginx >/dev/null || missing+=(nginx)
	command -v redis-server >/dev/null || missing+=(redis-server)
	[[ -e /usr/lib/nginx/modules/ngx_stream_module.so ]] || missing+=(libnginx-mod-stream)
	[[ -e /usr/lib/nginx/modules/ngx_mail_module.so ]] || missing+=(libnginx-mod-mail)
	if ((${#missing[@]})); then
		log "installing ${missing[*]}"
		apt-get update -q >/dev/null
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >/dev/null
	fi
	# The Debian package starts a system nginx on port 80; it is not measured.
}

build() {
	log "building gateway and mailbench"
	(cd "$ROOT" && go build -o "$DIR/gateway" ./examples/gateway && go build -o "$DIR/mailbench" ./examples/mailbench &&
		go build -o "$DIR/gofloor" ./bench/gofloor)
	MB=$DIR/mailbench
	if [[ -n ${BASE:-} ]]; then
		log "building gateway-base at $BASE"
		rm -rf "$DIR/base" && git -C "$ROOT" worktree add -f --detach "$DIR/base" "$BASE" >/dev/null
		(cd "$DIR/base" && go build -o "$DIR/gateway-base" ./examples/gateway)
		git -C "$ROOT" worktree remove --force "$DIR/base"
	fi
}

make_cert() {
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
		-keyout "$DIR/key.pem" -out "$DIR/cert.pem" -subj /CN=mail.example.com \
		-addext subjectAltName=DNS:mail.example.com 2>/dev/null
	cat "$DIR/cert.pem" "$DIR/key.pem" >"$DIR/combined.pem"
	# The RSA-2048 certificate of the -client rsa rows.
	openssl req -x509 -newkey rsa:2048 -nodes -days 30 -keyout "$DIR/rsa-key.pem" -out "$DIR/rsa-cert.pem" \
		-subj /CN=rsa.example.com -addext subjectAltName=DNS:rsa.example.com 2>/dev/null
	cat "$DIR/rsa-cert.pem" "$DIR/rsa-key.pem" >"$DIR/rsa-combined.pem"
	# The tenant's own certificate, which only the tenant backend holds.
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
		-keyout "$DIR/tenant-key.pem" -out "$DIR/tenant-cert.pem" -subj "/CN=$TENANT" \
		-addext "subjectAltName=DNS:$TENANT" 2>/dev/null
}

# render TEMPLATE NAME: fills in the placeholders for proxy NAME.
render() {
	sed -e "s|@DIR@|$DIR|g" -e "s|@PORT_IMAPS@|${IMAPS[$2]}|g" -e "s|@PORT_SMTPS@|${SMTPS[$2]:-0}|g" \
		-e "s|@PORT_PASS@|${PASS[$2]:-0}|g" -e "s|@PORT_RSA@|${RSAP[$2]:-0}|g" -e "s|@BACKEND_IMAPS@|$BACKEND_IMAPS|g" -e "s|@TENANT@|$TENANT|g" \
		-e "s|@BACKEND_IMAP@|$BACKEND_IMAP|g" -e "s|@BACKEND_SMTP@|$BACKEND_SMTP|g" \
		-e "s|@BACKEND_AUTH@|$BACKEND_AUTH|g" "$ROOT/bench/$1" >"$DIR/${1%.in}"
}

wait_port() {
	for _ in $(seq 100); do
		if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
		sleep 0.1
	done
	log "port $1 did not open"
	return 1
}

# gateway_args NAME: sets GWARGS to the gateway's flags with NAME's ports
# (gateway and gateway-base; they never run at the same time, so they
# share the STARTTLS and POP3 ports).
gateway_args() {
	GWARGS=(-cert "$DIR/cert.pem,$DIR/key.pem,default" -cert "$DIR/rsa-cert.pem,$DIR/rsa-key.pem" -log-level error -watch 0
		-listen "imaps=127.0.0.1:${IMAPS[$1]},proto=imap,tls=implicit,pool=imap"
		-listen "rsa=127.0.0.1:${RSAP[$1]},proto=imap,tls=implicit,pool=imap"
		-listen "imap=127.0.0.1:$GW_IMAP,proto=imap,tls=starttls,pool=imap"
		-listen "smtps=127.0.0.1:${SMTPS[$1]},proto=smtp,tls=implicit,pool=smtp"
		-listen "submission=127.0.0.1:$GW_SUBMISSION,proto=smtp,tls=starttls,pool=smtp"
		-listen "pop3s=127.0.0.1:$GW_POP3S,proto=pop3,tls=implicit,pool=pop3"
		-listen "pop3=127.0.0.1:$GW_POP3,proto=pop3,tls=starttls,pool=pop3"
		-listen "pass=127.0.0.1:${PASS[$1]},proto=imap,tls=implicit,pool=imap"
		-passthrough "pass:$TENANT=tenant" -backend "tenant=$BACKEND_IMAPS,security=passthrough,probe=none"
		-backend "imap=$BACKEND_IMAP,probe=none" -backend "smtp=$BACKEND_SMTP,probe=none"
		-backend "pop3=$BACKEND_POP3,probe=none")
}

PROXY_PID=
# start NAME: starts the proxy in the foreground of a background job and
# sets PROXY_PID (the process, or nginx's master) and PIDS (what to watch).
start() {
	case $1 in
	gateway)
		gateway_args "$1"
		"$DIR/gateway" "${GWARGS[@]}" >"$DIR/gateway.log" 2>&1 &
		;;
	gateway-base)
		# The same listeners as gateway, so that an A/B compares code and
		# not configuration; a revision that lacks one of its flags runs
		# implicit-TLS IMAP and SMTP only, without the rows of the others.
		gateway_args "$1"
		"$DIR/gateway-base" "${GWARGS[@]}" >"$DIR/gateway-base.log" 2>&1 &
		sleep 0.5
		if ! kill -0 $! 2>/dev/null; then
			log "gateway-base at $BASE refused gateway's flags ($(head -1 "$DIR/gateway-base.log")): implicit-TLS IMAP and SMTP only"
			unset "PASS[gateway-base]" "RSAP[gateway-base]"
			"$DIR/gateway-base" -cert "$DIR/cert.pem,$DIR/key.pem,default" -log-level error -watch 0 \
				-listen "imaps=127.0.0.1:${IMAPS[$1]},proto=imap,tls=implicit,pool=imap" \
				-listen "smtps=127.0.0.1:${SMTPS[$1]},proto=smtp,tls=implicit,pool=smtp" \
				-backend "imap=$BACKEND_IMAP,probe=none" -backend "smtp=$BACKEND_SMTP,probe=none" \
				>"$DIR/gateway-base.log" 2>&1 &
		fi
		;;
	gateway-login)
		# The login at the edge, routed by the auth_http responder nginx
		# mail asks (its Auth-Server/Auth-Port name the backend, so the
		# listener needs no pool).
		"$DIR/gateway" -cert "$DIR/cert.pem,$DIR/key.pem,default" -log-level error -watch 0 \
			-listen "imaps=127.0.0.1:${IMAPS[$1]},proto=imap,tls=implicit,auth" \
			-auth-http "http://$BACKEND_AUTH/auth" >"$DIR/gateway-login.log" 2>&1 &
		;;
	gateway-redis)
		"$DIR/gateway" -cert "$DIR/cert.pem,$DIR/key.pem,default" -log-level error -watch 0 \
			-listen "imaps=127.0.0.1:${IMAPS[$1]},proto=imap,tls=implicit,pool=imap,limit" \
			-backend "imap=$BACKEND_IMAP,probe=none" \
			-redis "127.0.0.1:$REDIS_PORT" -replica bench -ticket-keys redis \
			-limits "connrate=1000000000,inflight=1000000,unit=60s" >"$DIR/gateway-redis.log" 2>&1 &
		;;
	gofloor)
		"$DIR/gofloor" -cert "$DIR/cert.pem" -key "$DIR/key.pem" -cert "$DIR/rsa-cert.pem" -key "$DIR/rsa-key.pem" \
			-listen "127.0.0.1:${IMAPS[$1]}=$BACKEND_IMAP" -listen "127.0.0.1:${SMTPS[$1]}=$BACKEND_SMTP" \
			-listen "127.0.0.1:${RSAP[$1]}=$BACKEND_IMAP" \
			>"$DIR/gofloor.log" 2>&1 &
		;;
	haproxy) haproxy -db -f "$DIR/haproxy.cfg" >"$DIR/haproxy.log" 2>&1 & ;;
	nginx-stream) nginx -e "$DIR/nginx-stream.err" -c "$DIR/nginx-stream.conf" >"$DIR/nginx-stream.log" 2>&1 & ;;
	nginx-mail) nginx -e "$DIR/nginx-mail.err" -c "$DIR/nginx-mail.conf" >"$DIR/nginx-mail.log" 2>&1 & ;;
	stunnel) stunnel4 "$DIR/stunnel.conf" >"$DIR/stunnel.out" 2>&1 & ;;
	esac
	PROXY_PID=$!
	wait_port "${IMAPS[$1]}"
	if [[ -n ${PASS[$1]:-} ]]; then wait_port "${PASS[$1]}"; fi
	if [[ -n ${RSAP[$1]:-} ]]; then wait_port "${RSAP[$1]}"; fi
	PIDS=$PROXY_PID
	if [[ $1 == nginx-* ]]; then
		sleep 0.3 # let the workers start
		PIDS=$PROXY_PID,$(pgrep -d, -P "$PROXY_PID")
	fi
}

stop() {
	if [[ -n $PROXY_PID ]]; then
		kill "$PROXY_PID" 2>/dev/null || true
		wait "$PROXY_PID" 2>/dev/null || true
		PROXY_PID=
	fi
}

BACKEND_PID= REDIS_PID=
cleanup() {
	stop
	local p
	for p in $BACKEND_PID $REDIS_PID; do
		kill "$p" 2>/dev/null || true
		wait "$p" 2>/dev/null || true
	done
}
trap cleanup EXIT

# bench NAME REP: one proxy's whole run, results in $OUT/NAME-REP-*.json.
bench() {
	local name=$1 rep=$2 common
	start "$name"
	set_common() { common=(-insecure -sni mail.example.com -pid "$PIDS" -label "$name" -rep "$rep" -d "$DUR" -c "$CONC" -n "$IDLE" -hold "$HOLD"); }
	# The hypervisor's steal time since the previous run started (a shared
	# host's other guests): runs with much of it are slower for every proxy.
	local steal
	steal=$(awk '/^cpu /{print $9}' /proc/stat)
	printf '%s %s rep %s: %s; steal %ss\n' "$(date +%T)" "$name" "$rep" "$(cut -d' ' -f1-3 /proc/loadavg)" \
		"$(((steal - ${LAST_STEAL:-$steal}) / $(getconf CLK_TCK)))" >>"$OUT/loadavg.log"
	LAST_STEAL=$steal
	log "$name rep $rep (pids $PIDS, load $(cut -d' ' -f1 /proc/loadavg))"
	set_common
	"$MB" "${common[@]}" -addr "127.0.0.1:${IMAPS[$name]}" -proto imap -tests idle,full,resumed,login,rtt,seq,bulk1,bulk16 \
		-json "$OUT/$name-$rep-imaps.json" >>"$OUT/$name.txt" || log "$name imaps: errors (see $OUT/$name.txt)"
	if [[ -n ${SMTPS[$name]:-} ]]; then
		"$MB" "${common[@]}" -addr "127.0.0.1:${SMTPS[$name]}" -proto smtp -tests full,bulk1,bulk16 \
			-json "$OUT/$name-$rep-smtps.json" >>"$OUT/$name.txt" || log "$name smtps: errors"
	fi
	if [[ -n ${PASS[$name]:-} ]]; then
		# The tenant's name and certificate (verified: a terminated
		# connection fails), through the proxy's passthrough port.
		"$MB" -ca "$DIR/tenant-cert.pem" -sni "$TENANT" -tls passthrough -pid "$PIDS" -label "$name" -rep "$rep" -d "$DUR" -c "$CONC" \
			-addr "127.0.0.1:${PASS[$name]}" -proto imap -tests full \
			-json "$OUT/$name-$rep-passthrough.json" >>"$OUT/$name.txt" || log "$name passthrough: errors (see $OUT/$name.txt)"
	fi
	if [[ -n ${RSAP[$name]:-} ]]; then
		# Issue 19: the clients people really use, and how cost grows.
		local imaps=(-addr "127.0.0.1:${IMAPS[$name]}" -proto imap)
		"$MB" "${common[@]}" "${imaps[@]}" -tests full@64,rtt@16 -json "$OUT/$name-$rep-scale.json" >>"$OUT/$name.txt" || log "$name scale: errors"
		"$MB" "${common[@]}" "${imaps[@]}" -client mlkem -tests full,resumed -json "$OUT/$name-$rep-mlkem.json" >>"$OUT/$name.txt" || log "$name mlkem: errors"
		"$MB" "${common[@]}" "${imaps[@]}" -client tls12 -tests full,resumed -json "$OUT/$name-$rep-tls12.json" >>"$OUT/$name.txt" || log "$name tls12: errors"
		"$MB" "${common[@]}" -addr "127.0.0.1:${RSAP[$name]}" -proto imap -sni rsa.example.com -client rsa -tests full \
			-json "$OUT/$name-$rep-rsa.json" >>"$OUT/$name.txt" || log "$name rsa: errors"
		# Memory, each on a fresh proxy: sessions held at three scales,
		# after a 1 MiB download, and with ML-KEM clients.
		local m spec
		for m in idle@1000 "idle@$IDLEMAX" idlefetch idleappend@1000 mlkem:idle mlkem:idlefetch@1000; do
			spec=(-tests "${m#*:}")
			[[ $m == *:* ]] && spec+=(-client "${m%%:*}")
			stop
			start "$name"
			set_common
			"$MB" "${common[@]}" "${imaps[@]}" "${spec[@]}" -json "$OUT/$name-$rep-mem-${m/:/-}.json" >>"$OUT/$name.txt" || log "$name $m: errors"
		done
	fi
	if [[ $name == gateway ]]; then
		"$MB" "${common[@]}" -addr "127.0.0.1:$GW_POP3S" -proto pop3 -tests full -json "$OUT/$name-$rep-pop3s.json" >>"$OUT/$name.txt" || log "gateway pop3s: errors"
		# Each STARTTLS full test right after its implicit-TLS reference, the
		# first test (the same first command), so that both see the machine
		# in the same state.
		local p proto implicit plain
		for p in imap:${IMAPS[$name]}:$GW_IMAP smtp:${SMTPS[$name]}:$GW_SUBMISSION pop3:$GW_POP3S:$GW_POP3; do
			IFS=: read -r proto implicit plain <<<"$p"
			"$MB" "${common[@]}" -addr "127.0.0.1:$implicit" -proto "$proto" -tests first \
				-json "$OUT/$name-$rep-first-$proto.json" >>"$OUT/$name.txt" || log "gateway first $proto: errors"
			"$MB" "${common[@]}" -addr "127.0.0.1:$plain" -proto "$proto" -tls starttls -tests full \
				-json "$OUT/$name-$rep-starttls-$proto.json" >>"$OUT/$name.txt" || log "gateway starttls $proto: errors"
		done
	fi
	stop
}

machine() {
	echo "- nproc: $(nproc); CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')," \
		"family $(grep -m1 'cpu family' /proc/cpuinfo | cut -d: -f2 | tr -d ' '), $(grep -m1 'cpu MHz' /proc/cpuinfo | cut -d: -f2 | tr -d ' ') MHz"
	echo "- kernel: $(uname -r); $(. /etc/os-release && echo "$PRETTY_NAME"); memory: $(free -g | awk '/Mem:/{print $2}') GiB"
	echo "- $(cd "$ROOT" && go version); gateway at $(cd "$ROOT" && git rev-parse --short HEAD)${BASE:+, gateway-base at $(cd "$ROOT" && git rev-parse --short "$BASE")}"
	echo "- $(haproxy -v | head -1 | cut -d' ' -f1-3); $(nginx -v 2>&1); $(stunnel4 -version 2>&1 | grep -m1 '^stunnel'); $(openssl version)"
	if [[ " $TARGETS " == *" gateway-redis "* ]]; then echo "- $(redis-server --version | cut -d' ' -f1-3)"; fi
	echo "- settings: REPS=$REPS DUR=$DUR IDLE=$IDLE IDLEMAX=$IDLEMAX HOLD=$HOLD CONC=$CONC; descriptors: $(ulimit -Hn); started $(date -u +%FT%TZ)"
}

main() {
	install_peers
	build
	make_cert
	local t
	for t in haproxy.cfg.in nginx-stream.conf.in nginx-mail.conf.in stunnel.conf.in; do
		render "$t" "$(sed -e 's/\.c.*//' <<<"$t")"
	done
	ulimit -n "$(ulimit -Hn)"
	"$MB" serve -imap "$BACKEND_IMAP" -smtp "$BACKEND_SMTP" -pop3 "$BACKEND_POP3" -auth "$BACKEND_AUTH" \
		-imaps "$BACKEND_IMAPS" -cert "$DIR/tenant-cert.pem" -key "$DIR/tenant-key.pem" >"$DIR/backend.log" 2>&1 &
	BACKEND_PID=$!
	wait_port "${BACKEND_IMAP#*:}"
	wait_port "${BACKEND_IMAPS#*:}"
	if [[ " $TARGETS " == *" gateway-redis "* ]]; then
		redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save '' --appendonly no >"$DIR/redis.log" 2>&1 &
		REDIS_PID=$!
		wait_port "$REDIS_PORT"
	fi
	machine >"$OUT/machine.md"
	FLOOR=$("$MB" floor)
	echo "- Go crypto floor per full handshake: $FLOOR" >>"$OUT/machine.md"
	cat "$OUT/machine.md" >&2
	local rep targets=($TARGETS) n=${#targets[@]} i
	for ((rep = 1; rep <= REPS; rep++)); do
		for ((i = 0; i < n; i++)); do # rotate the order each repetition
			bench "${targets[$(((i + rep - 1) % n))]}" "$rep"
		done
	done
	local floor_us=${FLOOR#floor_us=} base=gateway
	# Ratios are the gateway's; a run without it takes its first target.
	[[ " $TARGETS " == *" gateway "* ]] || base=${targets[0]}
	"$MB" summarize -base "$base" -floor "${floor_us%% *}" "$OUT"/*.json | tee "$OUT/summary.md"
	echo "load average during the runs (1, 5, 15 min) and the host's steal time since the run before:" && cat "$OUT/loadavg.log"
	log "results in $OUT"
}

main "$@"
