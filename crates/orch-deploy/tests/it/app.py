# The test artifact: a tiny HTTP app on 127.0.0.1:$PORT.
#   /healthz  200, or 500 when this build's greeting is listed in $FAIL_HEALTH_FILE
#             (or when the build has a health_status.txt saying otherwise)
#   /         the greeting of this build (greeting.txt next to this file)
#   /sandbox  503: stands for a sandbox dependency that is down (an INFRA check)
#   /slow     answers after 3 s: longer than any check's timeout
import http.server
import os
import pathlib
import time

HERE = pathlib.Path(__file__).parent
GREETING = (HERE / "greeting.txt").read_text().strip()
BUILT_HEALTH = HERE / "health_status.txt"


def health_status():
    fail_file = os.environ.get("FAIL_HEALTH_FILE", "")
    if fail_file and os.path.exists(fail_file):
        if GREETING in pathlib.Path(fail_file).read_text().splitlines():
            return 500
    if BUILT_HEALTH.exists():
        return int(BUILT_HEALTH.read_text().strip())
    return 200


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/healthz":
            status, body = health_status(), "ok"
        elif self.path == "/":
            status, body = 200, GREETING
        elif self.path == "/sandbox":
            status, body = 503, "sandbox down"
        elif self.path == "/slow":
            time.sleep(3)
            status, body = 200, "late"
        else:
            status, body = 404, "not found"
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


http.server.HTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
