"""gunicorn settings read from the working directory (the repository root, /app in images).

gunicorn >= 23 opens a control socket, by default one per user in the home folder: two studios
run by one user on one machine would fight over it. Each studio gets its own, in its data folder
(``COPE_DATA_DIR``), or none when ``GUNICORN_CONTROL_SOCKET=off`` or the path is too long for a
Unix socket. Everything else stays on the command line (bin/run-studio, docker-compose.yml).
"""

from pathlib import Path

from worker.env import env_str

_data_dir = Path(env_str("COPE_DATA_DIR", "var")).resolve()
_socket = env_str("GUNICORN_CONTROL_SOCKET", str(_data_dir / "gunicorn.ctl"))
if _socket.lower() in ("off", "none", "false", "0") or len(_socket.encode()) > 100:
    control_socket_disable = True
else:
    Path(_socket).parent.mkdir(parents=True, exist_ok=True)
    control_socket = _socket
