#!/usr/bin/env python3
"""A static upstream for the image's smoke check (scripts/image.sh): serves a directory on
127.0.0.1 over HTTP, or HTTPS with --cert/--key, on a port the system picks, and writes
that port to --ready-file once it accepts connections. Runs until killed."""

import argparse
import functools
import http.server
import os
import ssl


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--root", required=True, help="the directory to serve")
    parser.add_argument("--ready-file", required=True, help="where to write the port")
    parser.add_argument("--cert", help="PEM certificate chain: serve HTTPS")
    parser.add_argument("--key", help="PEM private key of --cert")
    args = parser.parse_args()

    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=args.root)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    if args.cert:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(args.cert, args.key)
        server.socket = context.wrap_socket(server.socket, server_side=True)
    # Written whole, then renamed: a reader never sees a partial port.
    partial = args.ready_file + ".partial"
    with open(partial, "w", encoding="ascii") as ready:
        ready.write(f"{server.server_address[1]}\n")
    os.replace(partial, args.ready_file)
    server.serve_forever()


if __name__ == "__main__":
    main()
