# Run by a replica in platform_e2e: a process that opens the daemon's socket and exits
# at once, leaving the connection to its child, which relays it for the runtime CLI
# (through a socket of its own in a home of its own). The connection's peer, as the
# kernel recorded it at connect(), is then a process that no longer exists, and later
# a pid that another process may be given: the daemon must still refuse it.
#
#   relay_connection.py DAEMON_SOCKET FAKE_HOME CLI OUTPUT
import os
import select
import socket
import subprocess
import sys
import time

real, fake_home, cli, out = sys.argv[1:5]
connector = os.getpid()
conn = socket.socket(socket.AF_UNIX)
conn.connect(real)
if os.fork() != 0:
    os._exit(0)

# The child: wait until the connecting process has exited and been reaped.
deadline = time.time() + 10
while os.path.exists(f"/proc/{connector}") and time.time() < deadline:
    time.sleep(0.05)

os.makedirs(fake_home, exist_ok=True)
listener = socket.socket(socket.AF_UNIX)
listener.bind(os.path.join(fake_home, "runtime.sock"))
listener.listen(1)
with open(out, "w") as f:
    f.write(f"connector {connector} gone: {not os.path.exists(f'/proc/{connector}')}\n")
    f.flush()
    cli_run = subprocess.Popen(
        [cli, "runtime", "--home", fake_home, "status"], stdout=f, stderr=subprocess.STDOUT
    )
    client, _ = listener.accept()
    other = {client: conn, conn: client}
    relaying = True
    while relaying and cli_run.poll() is None:
        ready, _, _ = select.select([client, conn], [], [], 0.2)
        for s in ready:
            data = s.recv(65536)
            if not data:
                relaying = False
                break
            other[s].sendall(data)
    code = cli_run.wait()
with open(out, "a") as f:
    f.write(f"exit={code}\n")
