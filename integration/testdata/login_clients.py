"""Python's mail clients against mailedge.Proxy with Login set (login_test.go).

Usage: login_clients.py MODE CAFILE NAME CONNECT_IP PORT SOURCE_IP USER PASS TOKEN

NAME is the name the client verifies the certificate for (and sends as
SNI); the connection goes to CONNECT_IP:PORT from SOURCE_IP whatever the
name. Each mode prints what it saw, one fact a line, for the Go test to
assert; an unexpected failure raises (non-zero exit).

Modes:
  imap-login     IMAP4_SSL, login(), LIST, SELECT INBOX, SEARCH SUBJECT TOKEN
  imap-plain     the same with authenticate("PLAIN", ...)
  imap-refused   login() must be refused: prints the server's words
  pop3           POP3_SSL, user()/pass_(), stat(), RETR until TOKEN is found
  smtp-starttls  SMTP, starttls(), login(), a message with Subject TOKEN
  smtp-ssl       SMTP_SSL, login(), the same message
"""
import imaplib
import poplib
import smtplib
import socket
import ssl
import sys
from email.message import EmailMessage

mode, ca, name, connect_ip, port, src, user, password, tok = sys.argv[1:10]
port = int(port)

_create = socket.create_connection


def _connect(addr, timeout=socket.getdefaulttimeout(), source_address=None, *a, **k):
    return _create((connect_ip, addr[1]), timeout, (src, 0))


socket.create_connection = _connect

ctx = ssl.create_default_context(cafile=ca)
ctx.minimum_version = ssl.TLSVersion.TLSv1_2


def imap_check(c):
    typ, boxes = c.list()
    print("list", typ, b" ".join(boxes).decode())
    typ, data = c.select("INBOX")
    print("select", typ, data[0].decode())
    typ, data = c.search(None, "SUBJECT", tok)
    nums = data[0].split()
    print("search", typ, len(nums))
    if nums:
        typ, parts = c.fetch(nums[-1], "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        print("fetched", parts[0][1].decode().strip())
    c.logout()


if mode == "imap-login":
    c = imaplib.IMAP4_SSL(name, port, ssl_context=ctx, timeout=20)
    typ, data = c.login(user, password)
    print("login", typ, data[0].decode())
    imap_check(c)
elif mode == "imap-plain":
    c = imaplib.IMAP4_SSL(name, port, ssl_context=ctx, timeout=20)
    creds = ("\0%s\0%s" % (user, password)).encode()
    typ, data = c.authenticate("PLAIN", lambda _: creds)
    print("authenticate", typ, data[0].decode())
    imap_check(c)
elif mode == "imap-refused":
    c = imaplib.IMAP4_SSL(name, port, ssl_context=ctx, timeout=20)
    try:
        c.login(user, password)
    except imaplib.IMAP4.error as e:
        print("refused", e)
        c.logout()
    else:
        raise SystemExit("imaplib: login with a wrong password succeeded")
elif mode == "pop3":
    p = poplib.POP3_SSL(name, port, context=ctx, timeout=20)
    print("user", p.user(user).decode())
    print("pass", p.pass_(password).decode())
    count, size = p.stat()
    print("stat", count, size)
    for i in range(count, 0, -1):
        text = b"\n".join(p.retr(i)[1]).decode()
        if "Subject: " + tok in text:
            print("found", i)
            break
    p.quit()
elif mode in ("smtp-starttls", "smtp-ssl"):
    msg = EmailMessage()
    msg["From"] = user
    msg["To"] = user
    msg["Subject"] = tok
    msg.set_content("body line for " + tok + "\n")
    if mode == "smtp-ssl":
        s = smtplib.SMTP_SSL(name, port, context=ctx, timeout=20)
    else:
        s = smtplib.SMTP(name, port, timeout=20)
        s.starttls(context=ctx)
    code, text = s.login(user, password)
    print("login", code, text.decode())
    refused = s.send_message(msg)
    print("sent", tok, "refused", len(refused))
    s.quit()
else:
    raise SystemExit("unknown mode " + mode)
