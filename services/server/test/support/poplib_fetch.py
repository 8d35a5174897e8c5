#!/usr/bin/env python3
"""Fetch a maildrop with Python's poplib and write each message's bytes (CRLF lines) to OUTDIR.

usage: poplib_fetch.py MODE HOST PORT USER PASSWORD OUTDIR [CAFILE] [--dele]
MODE: plain | ssl | stls
Prints a JSON summary: stat, list, uidl, capa.
"""
import json
import os
import poplib
import ssl
import sys


def main() -> None:
    mode, host, port, user, password, outdir = sys.argv[1:7]
    rest = sys.argv[7:]
    dele = "--dele" in rest
    cafile = next((a for a in rest if not a.startswith("--")), None)
    ctx = ssl.create_default_context(cafile=cafile) if cafile else None
    if ctx:
        ctx.check_hostname = False
    if mode == "ssl":
        pop = poplib.POP3_SSL(host, int(port), context=ctx, timeout=30)
    else:
        pop = poplib.POP3(host, int(port), timeout=30)
    capa = pop.capa()
    if mode == "stls":
        pop.stls(context=ctx)
    pop.user(user)
    pop.pass_(password)
    count, octets = pop.stat()
    listing = [l.decode() for l in pop.list()[1]]
    uidl = [l.decode() for l in pop.uidl()[1]]
    os.makedirs(outdir, exist_ok=True)
    for n in range(1, count + 1):
        _, lines, _ = pop.retr(n)
        with open(os.path.join(outdir, f"{n}.eml"), "wb") as f:
            f.write(b"".join(line + b"\r\n" for line in lines))
        if dele:
            pop.dele(n)
    pop.quit()
    print(json.dumps({"stat": [count, octets], "list": listing, "uidl": uidl,
                      "capa": sorted(capa.keys())}))


if __name__ == "__main__":
    main()
