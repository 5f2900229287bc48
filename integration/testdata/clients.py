"""Real Python mail clients through the mailedge gateway (integration suite).

Usage: clients.py CAFILE GATEWAY_IP USER PASS TOKEN SUBMISSION IMAP IMAPS POP3S POP3
(each listener as host:port). Prints one line per step; exits non-zero on
any failure.
"""
import imaplib
import poplib
import smtplib
import socket
import ssl
import sys
import time
from email.message import EmailMessage

ca, gw, user, password, tok = sys.argv[1:6]
submission, imap, imaps, pop3s, pop3 = [a.rsplit(":", 1) for a in sys.argv[6:11]]

# Connect to the gateway whatever name the client uses, so the name can be
# the certificate's (SNI and hostname verification use it).
_create = socket.create_connection
socket.create_connection = lambda addr, *a, **k: _create((gw, addr[1]), *a, **k)

ctx = ssl.create_default_context(cafile=ca)
ctx.minimum_version = ssl.TLSVersion.TLSv1_2

msg = EmailMessage()
msg["From"] = user
msg["To"] = user
msg["Subject"] = tok
msg.set_content("body line for " + tok + "\n. a dot line\n")

with smtplib.SMTP("mail.example.org", int(submission[1]), timeout=20) as s:
    s.starttls(context=ctx)
    s.login(user, password)
    s.send_message(msg)
print("smtplib sent", tok)


def imap_find(conn):
    conn.login(user, password)
    deadline = time.time() + 20
    while True:
        conn.select("INBOX")
        typ, data = conn.search(None, "SUBJECT", tok)
        if typ == "OK" and data[0].split():
            break
        if time.time() > deadline:
            raise SystemExit("imaplib: message not delivered")
        time.sleep(0.2)
    num = data[0].split()[-1]
    typ, parts = conn.fetch(num, "(RFC822)")
    body = parts[0][1].decode()
    assert "Subject: " + tok in body and "body line for " + tok in body, body
    conn.logout()


c = imaplib.IMAP4("mail.example.net", int(imap[1]), timeout=20)
c.starttls(ssl_context=ctx)
imap_find(c)
print("imaplib starttls found", tok)

imap_find(imaplib.IMAP4_SSL("mail.example.com", int(imaps[1]), ssl_context=ctx, timeout=20))
print("imaplib ssl found", tok)


def pop_find(p):
    p.user(user)
    p.pass_(password)
    count, _ = p.stat()
    for i in range(count, 0, -1):
        lines = p.retr(i)[1]
        text = b"\n".join(lines).decode()
        if "Subject: " + tok in text and "body line for " + tok in text:
            p.quit()
            return
    raise SystemExit("poplib: message not found")


pop_find(poplib.POP3_SSL("mail.example.org", int(pop3s[1]), context=ctx, timeout=20))
print("poplib ssl found", tok)

p = poplib.POP3("mail.example.com", int(pop3[1]), timeout=20)
p.stls(context=ctx)
pop_find(p)
print("poplib stls found", tok)
