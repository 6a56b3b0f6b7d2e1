"""Starts, stops and talks to the twofold server the browser tests use.

run.sh starts the first server (through `python3 twofold_server.py start`) and
stops the last one; a test that restarts the server uses the same helper, so
the pid file always names the process that is running.
"""
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request


class Server:
    def __init__(self, binary, port, database_url, workdir):
        self.binary = binary
        self.port = int(port)
        self.database_url = database_url
        self.workdir = workdir
        self.pidfile = os.path.join(workdir, "server.pid")
        self.logfile = os.path.join(workdir, "server.log")

    @classmethod
    def from_env(cls):
        return cls(os.environ["TWOFOLD_BIN"], os.environ["TWOFOLD_PORT"], os.environ["TWOFOLD_DATABASE_URL"], os.environ["TWOFOLD_WORKDIR"])

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
        """Starts `twofold serve` on the port and database and waits for /healthz."""
        if self.pid() is not None:
            raise RuntimeError(f"a server is already running (pid {self.pid()})")
        log = open(self.logfile, "a")
        log.write(f"\n===== twofold serve --role {role} at {time.strftime('%H:%M:%S')} =====\n")
        log.flush()
        process = subprocess.Popen(
            [self.binary, "serve", "--bind", f"127.0.0.1:{self.port}", "--database-url", self.database_url, "--role", role],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        with open(self.pidfile, "w") as f:
            f.write(str(process.pid))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                os.remove(self.pidfile)
                raise RuntimeError(f"twofold exited with {process.returncode} at start; see {self.logfile}")
            try:
                with urllib.request.urlopen(f"{self.url}/healthz", timeout=1) as r:
                    if r.status == 200:
                        return process.pid
            except (urllib.error.URLError, ConnectionError, OSError):
                pass
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
        while time.monotonic() < deadline and _alive(pid):
            time.sleep(0.05)
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)
            while _alive(pid):
                time.sleep(0.05)
        os.remove(self.pidfile)

    def kill(self):
        self.stop(sig=signal.SIGKILL)

    def graphql(self, query, variables=None, headers=None):
        """POSTs a GraphQL request; returns the decoded answer (data and errors)."""
        body = json.dumps({"query": query, "variables": variables or {}}).encode()
        request = urllib.request.Request(
            f"{self.url}/graphql", data=body, headers={"content-type": "application/json", **(headers or {})}, method="POST"
        )
        with urllib.request.urlopen(request, timeout=30) as r:
            return json.loads(r.read())

    def data(self, query, variables=None):
        """Like graphql(), but raises on any error."""
        answer = self.graphql(query, variables)
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
        Server.from_env().stop()
    else:
        sys.exit(f"usage: {sys.argv[0]} free-port|start|stop")
