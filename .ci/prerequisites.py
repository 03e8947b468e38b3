#!/usr/bin/env python3
"""Checks the prerequisites the README states, with the one toolchain there is.

- The crate's `rust-version` is what README's Prerequisites says, and no
  dependency the library compiles (normal and build dependencies, every
  feature on) declares a newer `rust-version`: with the lock file as it is,
  the minimum Rust the README promises is not raised behind its back by a
  dependency. (Clippy's `incompatible_msrv` lint, on in CI through
  `-D warnings`, covers the crate's own use of newer std APIs.)
- The server CI tests against is at least the minimum PostgreSQL the README
  states (the crate refuses older ones at migration time).
Usage: prerequisites.py <psql> <database url>
"""
import json
import re
import subprocess
import sys


def version_tuple(text):
    return tuple(int(p) for p in text.split("."))


def main():
    psql, url = sys.argv[1], sys.argv[2]
    meta = json.loads(subprocess.check_output(
        ["cargo", "metadata", "--format-version", "1", "--all-features", "--locked"]))
    packages = {p["id"]: p for p in meta["packages"]}
    root = meta["resolve"]["root"]
    crate = packages[root]
    msrv = crate["rust_version"]
    readme = open("README.md", encoding="utf-8").read()
    stated = re.search(r"Rust (\d+\.\d+) or newer", readme)
    stated_pg = re.search(r"PostgreSQL (\d+) or newer", readme)
    if not stated or not stated_pg:
        sys.exit("README: the Prerequisites section must say 'Rust X.Y or newer' and 'PostgreSQL N or newer'")
    code = re.search(r"MIN_SERVER_VERSION_NUM: i32 = (\d+) \* 10_000;", open("src/migrate/mod.rs").read())
    if not code or code.group(1) != stated_pg.group(1):
        sys.exit(f"README says PostgreSQL {stated_pg.group(1)}; src/migrate/mod.rs MIN_SERVER_VERSION_NUM disagrees")
    if stated.group(1) != msrv:
        sys.exit(f"README says Rust {stated.group(1)}, Cargo.toml rust-version is {msrv}")

    nodes = {n["id"]: n for n in meta["resolve"]["nodes"]}
    seen, stack, offenders = set(), [root], []
    while stack:
        node = nodes[stack.pop()]
        for dep in node["deps"]:
            kinds = {k["kind"] for k in dep["dep_kinds"]}
            # Dev-dependencies of the crate itself are not built by users.
            if node["id"] == root and kinds <= {"dev"}:
                continue
            if kinds <= {"dev"}:
                continue
            if dep["pkg"] in seen:
                continue
            seen.add(dep["pkg"])
            stack.append(dep["pkg"])
            need = packages[dep["pkg"]].get("rust_version")
            if need and version_tuple(need) > version_tuple(msrv):
                offenders.append(f"{packages[dep['pkg']]['name']} {packages[dep['pkg']]['version']} needs Rust {need}")
    if offenders:
        sys.exit(f"dependencies need a newer Rust than rust-version {msrv}:\n  " + "\n  ".join(offenders))
    print(f"rust-version {msrv}: {len(seen)} library dependencies declare no newer Rust")

    rustc = subprocess.check_output(["rustc", "--version"], text=True).split()[1]
    if version_tuple(rustc.split("-")[0]) < version_tuple(msrv):
        sys.exit(f"rustc {rustc} is older than rust-version {msrv}")
    print(f"rustc {rustc} >= {msrv}")

    num = int(subprocess.check_output([psql, url, "-Atqc", "SHOW server_version_num"], text=True).strip())
    minimum = int(stated_pg.group(1)) * 10000
    if num < minimum:
        sys.exit(f"the server is {num}, older than PostgreSQL {stated_pg.group(1)}")
    print(f"server_version_num {num} >= {minimum}")


if __name__ == "__main__":
    main()
