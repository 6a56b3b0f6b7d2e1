"""Starts, stops and talks to the twofold servers the browser tests use.

run.sh starts the first server (through `python3 twofold_server.py start`) and
stops the last one; a test that restarts the server uses the same helper, so
the pid file always names the process that is running.

That server runs in open development mode (no keys: every request is staff).
A second one that requires bearer tokens (`Server.keyed()`, with
TWOFOLD_JWT_SECRET set) is started by the `keyed_server` fixture; its pid and
log files are named `keyed.*`, and `twofold_server.py stop keyed` stops it.
Tokens for it come from the binary itself (`twofold token`, `Server.mint`).
"""
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request


# Identity settings the servers get only from this helper, never from the caller's environment.
IDENTITY_ENV = ("TWOFOLD_JWT_SECRET", "TWOFOLD_JWKS_FILE", "TWOFOLD_JWT_ISSUER", "TWOFOLD_JWT_AUDIENCE", "TWOFOLD_JWT_LEEWAY_SECS", "TWOFOLD_ADMIN_TOKEN")


class Server:
    def __init__(self, binary, port, database_url, workdir, name="server", jwt_secret=None, extra_args=()):
        self.binary = binary
        self.port = int(port)
        self.database_url = database_url
        self.workdir = workdir
        self.name = name
        self.jwt_secret = jwt_secret
        self.extra_args = list(extra_args)
        self.pidfile = os.path.join(workdir, f"{name}.pid")
        self.logfile = os.path.join(workdir, f"{name}.log")
        # The role of the running process (run.sh starts the shared one with the default, all).
        self.role = "all"

    @classmethod
    def from_env(cls):
        return cls(os.environ["TWOFOLD_BIN"], os.environ["TWOFOLD_PORT"], os.environ["TWOFOLD_DATABASE_URL"], os.environ["TWOFOLD_WORKDIR"])

    @classmethod
    def keyed(cls, port=None):
        """A server that requires bearer JWTs: a fresh HS256 secret and its own database."""
        workdir = os.environ["TWOFOLD_WORKDIR"]
        return cls(
            os.environ["TWOFOLD_BIN"],
            port or free_port(),
            f"sqlite://{workdir}/keyed.db?mode=rwc",
            workdir,
            name="keyed",
            jwt_secret=secrets.token_urlsafe(48),
        )

    def _env(self):
        env = {k: v for k, v in os.environ.items() if k not in IDENTITY_ENV}
        if self.jwt_secret:
            env["TWOFOLD_JWT_SECRET"] = self.jwt_secret
        return env

    def mint(self, role, customer_id=None, ttl="1h", secret=None):
        """A bearer token from `twofold token`, signed with this server's secret (or `secret`)."""
        secret = secret or self.jwt_secret
        if not secret:
            raise RuntimeError("this server has no JWT secret (open development mode)")
        args = [self.binary, "token", "--role", role, "--ttl", ttl]
        if customer_id:
            args += ["--customer-id", customer_id]
        env = {k: v for k, v in os.environ.items() if k not in IDENTITY_ENV}
        env["TWOFOLD_JWT_SECRET"] = secret
        done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=30, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"twofold token failed ({done.returncode}): {done.stderr.strip()}")
        return done.stdout.strip()

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def pid(self):
        try:
            with open(self.pidfile) as f:
                return int(f.read().strip())
        except (FileNotFoundError, ValueError):
            return None

    def start(self, role="all", timeout=30.0):
        """Starts `twofold serve` on the port and database and waits until /healthz says it has started."""
        if self.pid() is not None:
            raise RuntimeError(f"a server is already running (pid {self.pid()})")
        log = open(self.logfile, "a")
        keys = "HS256 secret" if self.jwt_secret else "open development mode"
        log.write(f"\n===== twofold serve --role {role} ({keys}) at {time.strftime('%H:%M:%S')} =====\n")
        log.flush()
        process = subprocess.Popen(
            [self.binary, "serve", "--bind", f"127.0.0.1:{self.port}", "--database-url", self.database_url, "--role", role]
            + self.extra_args,
            env=self._env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        with open(self.pidfile, "w") as f:
            f.write(str(process.pid))
        self.role = role
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                os.remove(self.pidfile)
                raise RuntimeError(f"twofold exited with {process.returncode} at start; see {self.logfile}")
            try:
                # /healthz answers while the server still starts ("starting": true): wait for the service.
                with urllib.request.urlopen(f"{self.url}/healthz", timeout=1) as r:
                    if r.status == 200 and not json.loads(r.read() or b"{}").get("starting"):
                        return process.pid
            except (urllib.error.URLError, ConnectionError, OSError):
                pass
            # Another process: /healthz is the signal it gives, so ask again shortly.
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"twofold did not answer /healthz within {timeout} s; see {self.logfile}")

    def stop(self, sig=signal.SIGTERM, timeout=15.0):
        """Stops the running server (SIGTERM, or SIGKILL to simulate a crash) and waits until it is gone."""
        pid = self.pid()
        if pid is None:
            return
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + timeout
        # The server may have been started by another helper (the pidfile is
        # what we share), so there is no child handle to wait on: look again.
        while time.monotonic() < deadline and _alive(pid):
            time.sleep(0.05)
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)
            while _alive(pid):
                time.sleep(0.05)
        os.remove(self.pidfile)

    def readyz(self):
        """(HTTP status, decoded body) of /readyz."""
        try:
            with urllib.request.urlopen(f"{self.url}/readyz", timeout=5) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"{}")

    def wait_ready(self, timeout=10.0):
        """Waits until /readyz answers 200; raises with its last answer, which
        names any stalled projection and what it waits on."""
        deadline = time.monotonic() + timeout
        while True:
            status, body = self.readyz()
            if status == 200:
                return body
            if time.monotonic() >= deadline:
                raise AssertionError(f"/readyz is {status} after {timeout} s: {json.dumps(body)}")
            # /readyz is the other process's only signal of readiness.
            time.sleep(0.1)

    def kill(self):
        self.stop(sig=signal.SIGKILL)

    def graphql(self, query, variables=None, headers=None, token=None):
        """POSTs a GraphQL request (with `token` as the bearer token); returns
        the decoded answer (data and errors), also of a 4xx answer."""
        body = json.dumps({"query": query, "variables": variables or {}}).encode()
        headers = {"content-type": "application/json", **(headers or {})}
        if token:
            headers["authorization"] = f"Bearer {token}"
        request = urllib.request.Request(f"{self.url}/graphql", data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=30) as r:
                return json.loads(r.read())
        except urllib.error.HTTPError as e:
            if e.code >= 500:
                raise
            return json.loads(e.read())

    def data(self, query, variables=None, token=None):
        """Like graphql(), but raises on any error."""
        answer = self.graphql(query, variables, token=token)
        if answer.get("errors"):
            raise RuntimeError(f"GraphQL errors: {answer['errors']}")
        return answer["data"]


def _alive(pid):
    try:
        waited, _ = os.waitpid(pid, os.WNOHANG)
        if waited == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie that is not our child counts as gone.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


if __name__ == "__main__":
    command = sys.argv[1]
    if command == "free-port":
        print(free_port())
    elif command == "start":
        print(Server.from_env().start())
    elif command == "stop":
        server = Server.from_env()
        if len(sys.argv) > 2:  # another server's pid file in the same work directory, e.g. `stop keyed`
            server = Server(server.binary, server.port, server.database_url, server.workdir, name=sys.argv[2])
        server.stop()
    else:
        sys.exit(f"usage: {sys.argv[0]} free-port|start|stop [name]")
