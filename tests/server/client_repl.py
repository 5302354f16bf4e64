"""A client application for the tests: reads commands on stdin, answers one line each.

    access NAME PRODUCT MODE FEATURE UNITS [GRACE] -> OK <server> <license id> <product key hex> | ERR <Type> <message>
    grace NAME                            -> OK <seconds of grace the server granted>
    release NAME                          -> OK
    lost NAME                             -> OK <True|False>
    fork NAME                             -> OK <released-in-child> <child-could-use-key>
    exit

The lease-lost callback prints "EVENT lost NAME" / "EVENT back NAME" at any time.
Run with: python client_repl.py FIRM PEMFILE
"""

import os
import sys

import licentia

firm = int(sys.argv[1])
licentia.trust(firm, sys.argv[2])
handles = {}


def say(*parts):
    sys.stdout.write(" ".join(str(p) for p in parts) + "\n")
    sys.stdout.flush()


def callback_for(name):
    def callback(handle, back):
        say("EVENT", "back" if back else "lost", name)

    return callback


for line in sys.stdin:
    parts = line.split()
    if not parts:
        continue
    cmd = parts[0]
    try:
        if cmd == "access":
            name, product, mode, feature, units = parts[1], int(parts[2]), parts[3], int(parts[4]), int(parts[5])
            grace = int(parts[6]) if len(parts) > 6 else 0
            try:
                h = licentia.access(
                    firm, product, feature, units=units, mode=mode, on_lease_lost=callback_for(name), grace=grace
                )
            except licentia.LicenseError as exc:
                say("ERR", type(exc).__name__, str(exc).replace("\n", " "))
                continue
            handles[name] = h
            try:
                key = h.product_key(1).hex()
            except licentia.LicenseError:
                key = "-"
            say("OK", h.server, h.license_id, key)
        elif cmd == "release":
            handles.pop(parts[1]).release()
            say("OK")
        elif cmd == "grace":
            say("OK", handles[parts[1]].grace)
        elif cmd == "lost":
            say("OK", handles[parts[1]].lease_lost)
        elif cmd == "fork":
            h = handles[parts[1]]
            r, w = os.pipe()
            pid = os.fork()
            if pid == 0:
                os.close(r)
                released = h.released
                h.release()  # must not release the parent's lease
                os.write(w, b"1" if released else b"0")
                os._exit(0)
            os.close(w)
            child_saw_released = os.read(r, 1) == b"1"
            os.waitpid(pid, 0)
            say("OK", child_saw_released, h.released)
        elif cmd == "exit":
            for h in handles.values():
                h.release()
            say("OK")
            break
        else:
            say("ERR", "BadCommand", cmd)
    except Exception as exc:  # noqa: BLE001 - report, keep going
        say("ERR", type(exc).__name__, str(exc).replace("\n", " "))
