"""A stand-in for AWS STS on 127.0.0.1: AssumeRoleWithWebIdentity answered with fixed keys.

STS cannot run here; this answers the one call the web identity (EKS IRSA) credential
provider makes, with the keys of a real S3 server (SeaweedFS), so a test can show that a
process holding only a role ARN and a token file reaches its bucket. The session token is
empty: SeaweedFS would take one for a session of its own STS and reject the keys. It
records each request's form fields, so a test can check what was asked for.
"""

from __future__ import annotations

import datetime as dt
import http.server
import threading
import urllib.parse

_ANSWER = """<AssumeRoleWithWebIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <AssumeRoleWithWebIdentityResult>
    <Credentials>
      <AccessKeyId>{access_key}</AccessKeyId>
      <SecretAccessKey>{secret_key}</SecretAccessKey>
      <SessionToken></SessionToken>
      <Expiration>{expiration}</Expiration>
    </Credentials>
    <AssumedRoleUser>
      <Arn>arn:aws:sts::123456789012:assumed-role/caretaker/test</Arn>
      <AssumedRoleId>AROATEST:test</AssumedRoleId>
    </AssumedRoleUser>
  </AssumeRoleWithWebIdentityResult>
  <ResponseMetadata><RequestId>00000000-0000-0000-0000-000000000000</RequestId></ResponseMetadata>
</AssumeRoleWithWebIdentityResponse>"""


class StsStandIn:
    """Answers every POST with temporary credentials made of `access_key`/`secret_key`."""

    def __init__(self, access_key: str, secret_key: str) -> None:
        self.requests: list[dict[str, str]] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                outer.requests.append(dict(urllib.parse.parse_qsl(body.decode())))
                expiration = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
                answer = _ANSWER.format(
                    access_key=access_key,
                    secret_key=secret_key,
                    expiration=expiration.strftime("%Y-%m-%dT%H:%M:%SZ"),
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/xml")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()
