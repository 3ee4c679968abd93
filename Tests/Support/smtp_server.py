#!/usr/bin/env python3
"""A real SMTP server for the alert delivery tests (aiosmtpd, Debian's python3-aiosmtpd).

Listens on 127.0.0.1 on a port the kernel picks, with a self-signed certificate made here with the openssl
command (for 127.0.0.1 and localhost), and writes each message it accepts as one JSON line to --out: the
envelope, the raw message, and the subject and body as a mail reader decodes them. Prints one JSON line
{"port": N, "ca": "PATH"} on stdout once it accepts connections, then serves until it is killed or its
stdin closes (so that it ends with the test process, however that ends).
"""

import argparse
import asyncio
import email
import email.policy
import json
import os
import socket
import signal
import ssl
import subprocess
import sys
import threading

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword


def make_certificate(directory):
    cert = os.path.join(directory, "smtp-cert.pem")
    key = os.path.join(directory, "smtp-key.pem")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", key, "-out", cert, "-days", "2", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
        check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return cert, key


class Recorder:
    def __init__(self, out, rejected):
        self.out = out
        self.rejected = set(rejected)

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address in self.rejected:
            return "550 5.1.1 no such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        raw = envelope.content
        message = email.message_from_bytes(raw, policy=email.policy.default)
        record = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "raw": raw.decode("utf-8", "replace"),
            "subject": str(message["Subject"]),
            "body": message.get_content(),
            "headers": {name: str(value) for name, value in message.items()},
            "tls": session.ssl is not None,
            "authenticated": bool(session.authenticated),
        }
        with open(self.out, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        return "250 2.0.0 queued"


class NoEHLO(SMTP):
    """A server from before ESMTP: EHLO is refused, HELO works."""

    async def smtp_EHLO(self, arg):
        await self.push("502 5.5.1 EHLO not implemented")


class InjectingAfterSTARTTLS(SMTP):
    """What a man in the middle does to a STARTTLS client: a reply sent in clear right after the 220, which a
    careless client would take as the first reply over TLS."""

    async def smtp_STARTTLS(self, arg):
        await self.push("220 2.0.0 Ready to start TLS\r\n250-injected\r\n250 AUTH PLAIN")


class ImplicitTLS(SMTP):
    """TLS from the first byte. aiosmtpd 1.4 knows only TLS begun by STARTTLS: mark the connection encrypted,
    so that AUTH is offered and the record says TLS."""

    def connection_made(self, transport):
        super().connection_made(transport)
        self._tls_protocol = transport
        self.session.ssl = {"ssl_object": transport.get_extra_info("ssl_object")}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--dir", required=True, help="where the certificate and key are written")
    parser.add_argument("--tls", choices=["starttls", "implicit", "none"], default="starttls")
    parser.add_argument("--user")
    parser.add_argument("--password")
    parser.add_argument("--reject-rcpt", action="append", default=[])
    parser.add_argument("--no-ehlo", action="store_true")
    parser.add_argument("--inject-after-starttls", action="store_true")
    args = parser.parse_args()
    # A child of a Swift test process inherits its threads' blocked signals: unblock them, so SIGTERM works.
    signal.pthread_sigmask(signal.SIG_SETMASK, [])

    cert, key = make_certificate(args.dir)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)

    def authenticator(server, session, envelope, mechanism, auth_data):
        ok = (isinstance(auth_data, LoginPassword)
              and auth_data.login == (args.user or "").encode()
              and auth_data.password == (args.password or "").encode())
        return AuthResult(success=ok, handled=False)

    handler = Recorder(args.out, args.reject_rcpt)
    kind = (NoEHLO if args.no_ehlo else ImplicitTLS if args.tls == "implicit"
            else InjectingAfterSTARTTLS if args.inject_after_starttls else SMTP)
    options = dict(hostname="outpost-test-smtp", decode_data=False)
    if args.user:
        options.update(authenticator=authenticator, auth_required=True, auth_require_tls=args.tls != "none")
    else:
        # Offered nowhere, so that a client that wants AUTH finds none.
        options.update(auth_exclude_mechanism=["PLAIN", "LOGIN"])
    if args.tls == "starttls":
        options.update(tls_context=context, require_starttls=True)

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    server = loop.run_until_complete(loop.create_server(
        lambda: kind(handler, loop=loop, **options), sock=sock,
        ssl=context if args.tls == "implicit" else None))
    def watch_stdin():
        while os.read(sys.stdin.fileno(), 4096):
            pass
        loop.call_soon_threadsafe(loop.stop)

    threading.Thread(target=watch_stdin, daemon=True).start()
    print(json.dumps({"port": sock.getsockname()[1], "ca": cert}), flush=True)
    try:
        loop.run_forever()
    finally:
        server.close()


if __name__ == "__main__":
    sys.exit(main())
