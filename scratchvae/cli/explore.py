"""bin/explore: a page on this machine to look inside a trained model: a frame, its reconstruction, and its
code on a slider per latent dimension, decoded again as a slider moves.

The server is the standard library's (http.server), bound to 127.0.0.1 only, a thread per connection and
the model behind a lock (scratchvae/use/explorer.py answers the questions). It serves the page's three files
(scratchvae/page/) and four questions as JSON:

    GET  /api/info            the code's size, the dimensions ordered by KL, the checkpoint, the frames
    GET  /api/frame?i=N       frame N, its μ and its reconstruction
    GET  /api/sample?seed=S   a code drawn from the prior, and its picture
    POST /api/decode          {"z": [D numbers]} → its picture and the decoder's time

A request it cannot answer gets a 4xx status and one line of text saying what was expected and what came;
nothing a request sends stops the server or shows a traceback. Nothing is written anywhere."""
import errno
import json
import os
import socket
import sys
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from . import OneLineParser, add_checkpoint_options, at_most, number_type, run
from ..ops.devices import resolve_device
from ..data.dataset import FrameDataset
from ..use.explorer import BadRequest, Explorer, short
from ..run.runfolder import load
from .sample import run_frames

HOST = "127.0.0.1"
PAGE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "page")
FILES = {"/": ("explore.html", "text/html; charset=utf-8"),
         "/explore.js": ("explore.js", "text/javascript; charset=utf-8"),
         "/explore.css": ("explore.css", "text/css; charset=utf-8")}
MAX_BODY = 16 * 1024                    # a code of 32 numbers is under 1 kB of JSON
MAX_FRAMES = 4096                       # --frames: each is read and encoded as the page starts (~1 s per 1,000)
# the page may load its own files and data: images, nothing from anywhere else
POLICY = "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
port_number = number_type(lambda v: 0 <= v <= 65535, "a port number 0 … 65535", int)


def parser():
    p = OneLineParser(
        prog="explore",
        description="Serve a page on this machine (http://127.0.0.1:PORT/, nothing else can reach it) that "
                    "shows a trained model's code of a frame on a slider per latent dimension, ordered by "
                    "how much of the KL each carries, and decodes the code again as the sliders move; "
                    "buttons go to the next frame, draw a code from the prior, or walk from the code to "
                    "another frame's. Frames come from --data, else from the run's own held-out frames.")
    add_checkpoint_options(p)
    p.add_argument("--data", help="folder of episode files to take frames from (default: the held-out frames of "
                                  "the data folder the run was trained on, if it is still there; else none, and "
                                  "the page starts from a prior sample)")
    p.add_argument("--frames", type=at_most(MAX_FRAMES, "each is read and encoded as the page starts"), default=256,
                   help=f"frames to offer, spread evenly over the data, at most {MAX_FRAMES:,} (default 256)")
    p.add_argument("--port", type=port_number, default=8765, help="port on 127.0.0.1 (default 8765; 0: any free one)")
    p.add_argument("--device", choices=("cpu", "gpu", "auto"), default="cpu", help="where the model decodes "
                                                                                  "(default cpu)")
    return p


class Refused(Exception):
    """A request answered with a 4xx status and one line (the exception's text)."""

    def __init__(self, status, reason, headers=()):
        super().__init__(reason)
        self.status, self.headers = status, dict(headers)


def one_number(query, name, low, high):
    """The one whole number `name` of a parsed query string, within [low, high]; else Refused (400). Digits
    past the length of `high` are refused as they are, not converted (Python refuses to convert 4,301)."""
    values = query.get(name, [])
    if len(values) != 1:
        raise Refused(400, f"expected one {name}=N in the query, got {len(values)}")
    text = values[0]
    if (not (text.isascii() and text.isdigit()) or len(text.lstrip("0")) > len(str(high))
            or not low <= int(text) <= high):
        raise Refused(400, f"expected {name}: a whole number {low} … {high}, got {short(text)}")
    return int(text)


def read_code(handler):
    """The JSON body {"z": [...]} of a POST, read with its size checked first; the list z."""
    if "chunked" in handler.headers.get("Transfer-Encoding", "").lower():
        raise Refused(411, "expected a Content-Length header, got a chunked body")
    size = handler.headers.get("Content-Length")
    if size is None:
        raise Refused(411, "expected a Content-Length header with the body's size")
    if not (size.isascii() and size.isdigit()):
        raise Refused(400, f"expected Content-Length: a number of bytes, got {short(size)}")
    n = int(size)
    if n > MAX_BODY:
        raise Refused(413, f"expected a body of at most {MAX_BODY} bytes, got {n}")
    try:
        body = handler.rfile.read(n)
    except TimeoutError:
        raise Refused(408, f"expected a body of {n} bytes within {handler.timeout} s; it did not come") from None
    if len(body) < n:
        raise Refused(400, f"the body ended after {len(body)} of its {n} bytes")

    def no_constant(name):                                  # NaN, Infinity: JSON has no such numbers
        raise ValueError(f"{name} is not a JSON number")
    try:
        data = json.loads(body, parse_constant=no_constant)
    except (ValueError, RecursionError) as e:
        raise Refused(400, f'expected a JSON object {{"z": [numbers]}}, got {short(body)} ({e})') from None
    if not isinstance(data, dict) or "z" not in data:
        raise Refused(400, f'expected a JSON object {{"z": [numbers]}}, got {short(data)}')
    return data["z"]


class Handler(BaseHTTPRequestHandler):
    """One request: a page file, or a question for the Explorer (the class attribute `explorer`); `routes`, at
    the end, says which method each path takes and what answers it."""
    explorer = None             # set by make_server on a subclass, with `about` and `files`
    protocol_version = "HTTP/1.1"
    server_version = "scratchvae-explore"
    timeout = 10                # seconds a connection may keep the server waiting for its request
    disable_nagle_algorithm = True      # the body goes out at once, not ~40 ms later when the page's TCP acks the headers

    def do_GET(self):
        self.answer()

    def do_POST(self):
        self.answer()

    def do_HEAD(self):
        self.answer()

    def __getattr__(self, name):
        """Any other method (PUT, DELETE, BREW): answered, and refused with 405, not 501."""
        if name.startswith("do_"):
            return self.answer
        raise AttributeError(name)

    def answer(self):
        try:
            self.check_host()
            url = urlsplit(self.path)
            if url.path not in self.routes:
                questions = ", ".join(p for p in self.routes if p.startswith("/api/"))
                raise Refused(404, f"no page {short(url.path)}: the page is /, its questions {questions}")
            method, respond = self.routes[url.path]
            allowed = (method, "HEAD") if method == "GET" else (method,)
            if self.command not in allowed:
                raise Refused(405, f"{url.path} takes {' or '.join(allowed)}, got {short(self.command)}",
                              {"Allow": ", ".join(allowed)})
            respond(self, url.path, parse_qs(url.query, keep_blank_values=True))
        except Refused as r:
            self.refuse(r.status, str(r), r.headers)
        except BadRequest as e:
            self.refuse(400, str(e))
        except ConnectionError:                              # the page went away mid-answer: nothing to say
            raise
        except Exception as e:                               # a mistake of ours: said, and the server goes on
            print(f"explore: error: {self.command} {short(self.path)}: {type(e).__name__}: {e}", file=sys.stderr)
            self.refuse(500, f"the server failed on this request ({type(e).__name__}: {e}); it goes on")

    def check_host(self):
        """Only this machine's own pages ask: a Host other than 127.0.0.1 or localhost (a site that renamed
        itself to this address, 'DNS rebinding') is refused."""
        host, port = self.headers.get("Host"), self.server.server_address[1]
        if host is not None and host not in (f"{HOST}:{port}", f"localhost:{port}"):
            raise Refused(403, f"expected Host {HOST}:{port} (this server answers this machine only), "
                               f"got {short(host)}")

    # ---- the answers, one per path --------------------------------------------------------------
    def page_file(self, path, query):
        self.send(*self.files[path])

    def info(self, path, query):
        self.send_json({**self.explorer.info(), **self.about})

    def frame(self, path, query):
        count = 0 if self.explorer.frames is None else len(self.explorer.frames)
        if not count:
            raise Refused(400, "no frames to show: none were given (explore --data DIR)")
        self.send_json(self.explorer.frame(one_number(query, "i", 0, count - 1)))

    def sample(self, path, query):
        self.send_json(self.explorer.sample(one_number(query, "seed", 0, 2 ** 63 - 1)))

    def decode(self, path, query):
        start = time.perf_counter()
        z = self.explorer.check_code(read_code(self))
        answer = self.explorer.decode(z)
        self.send_json({**answer, "server_ms": (time.perf_counter() - start) * 1e3})

    routes = {**dict.fromkeys(FILES, ("GET", page_file)), "/api/info": ("GET", info), "/api/frame": ("GET", frame),
              "/api/sample": ("GET", sample), "/api/decode": ("POST", decode)}     # path → (its method, its answer)

    def send_json(self, value):
        self.send(json.dumps(value, allow_nan=False).encode(), "application/json")

    def send(self, body, kind, status=200, headers=()):
        self.send_response(status)
        for key, value in [("Content-Type", kind), ("Content-Length", str(len(body))), ("Cache-Control", "no-store"),
                           ("Content-Security-Policy", POLICY), ("X-Content-Type-Options", "nosniff"), *headers]:
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def refuse(self, status, reason, headers=()):
        """status with one line of text; the connection is closed after it (a body may be left unread)."""
        self.close_connection = True
        self.send((" ".join(reason.split()) + "\n").encode(), "text/plain; charset=utf-8", status,
                  [*dict(headers).items(), ("Connection", "close")])

    def send_error(self, code, message=None, explain=None):
        """What http.server refuses itself (a malformed request line, a URL or headers too long): one line,
        and a 4xx for an HTTP version it does not speak (its own answer is 505)."""
        if code == HTTPStatus.HTTP_VERSION_NOT_SUPPORTED:
            code, message = 400, f"expected HTTP/1.0 or HTTP/1.1, got {short(self.requestline.split()[-1])}"
        if self.request_version == "HTTP/0.9":          # the request line was not understood: answer with a status
            self.request_version = "HTTP/1.0"          # line all the same (http.server would send the text alone)
        self.refuse(code, message or HTTPStatus(code).phrase)

    def log_message(self, *args):
        """Requests are not logged (a slider sends dozens a second); the server's own failures are (answer)."""


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024           # connections waiting to be accepted (the standard library's 5 reset a burst)
    LINGER_BYTES, LINGER_S = 64 << 20, 2.0

    def shutdown_request(self, request):
        """Close a connection the way clients can read the answer: the answer sent, what the client still sends
        (a refused body, say) is read and dropped until it stops, up to LINGER_BYTES or LINGER_S seconds. (A
        socket closed with unread bytes sends a reset, and a client still sending sees a broken pipe instead
        of the status.)"""
        try:
            request.shutdown(socket.SHUT_WR)
            request.settimeout(self.LINGER_S)
            end, dropped = time.monotonic() + self.LINGER_S, 0
            while dropped < self.LINGER_BYTES and time.monotonic() < end:
                chunk = request.recv(65536)
                if not chunk:
                    break
                dropped += len(chunk)
        except OSError:
            pass
        self.close_request(request)

    def handle_error(self, request, client_address):
        """A connection that failed outside a request (the page closed mid-answer): one line, no traceback."""
        e = sys.exc_info()[1]
        if not isinstance(e, (ConnectionError, TimeoutError)):
            print(f"explore: error: a connection failed: {type(e).__name__}: {e}", file=sys.stderr)


def make_server(explorer, port, about):
    """A Server on 127.0.0.1:port (0: any free one) answering with explorer; `about`: what /api/info adds."""
    files = {}                                          # path → (the file's bytes, its type): read once, here
    for path, (name, kind) in FILES.items():
        with open(os.path.join(PAGE, name), "rb") as f:
            files[path] = f.read(), kind
    handler = type("ExploreHandler", (Handler,), dict(explorer=explorer, about=about, files=files))
    try:
        return Server((HOST, port), handler)
    except OSError as e:
        if e.errno == errno.EADDRINUSE:
            raise OSError(f"port {port} on {HOST} is taken (another explore?): give another with --port, "
                          "or --port 0 for any free one") from None
        raise


def main(argv=None):
    args = parser().parse_args(argv)
    device = resolve_device(args.device)
    ck = load(args.checkpoint, device=device, best=args.best)
    size = tuple(ck.model.input_shape[1:])
    if args.data:
        data = FrameDataset(args.data, heldout=0, size=size)
        frames = data.spread(args.frames, "train")
        source = f"{len(frames)} frames spread over {args.data} ({data.describe()})"
    else:
        frames, source = run_frames(ck, args.frames)
        source = (f"{len(frames)} {source} of the run" if frames is not None else
                  f"no frames ({source}): give --data DIR for them")
    start = time.perf_counter()
    explorer = Explorer(ck.model, frames, source)
    server = make_server(explorer, args.port, dict(checkpoint=os.path.abspath(ck.path), step=ck.step))
    print(f"explore: {ck.path} (step {ck.step}) on the {device.upper()}; {source}; codes and KL in "
          f"{time.perf_counter() - start:.1f} s")
    print(f"explore: open http://{HOST}:{server.server_address[1]}/ (Ctrl-C stops it)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:                               # Ctrl-C: the way to stop it, with the tools' status
        print("explore: stopped (Ctrl-C)")
        return 130
    finally:
        server.server_close()
    return 0


def entry():
    return run("explore", main)
