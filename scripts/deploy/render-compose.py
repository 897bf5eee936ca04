#!/usr/bin/env python3
"""Render the deployment check's variant of docker-compose.yml.

The project's docker-compose.yml is written for a real deployment: a bridge network, service
names as host names, published ports. The deployment check (scripts/deploy-check.sh) runs on
machines whose only network is the loopback one, so it starts the same services with host
networking instead. This script writes that variant; docker-compose.yml itself is never changed.

    render-compose.py SRC OUT --port 9092=41001 --port 9093=41002 ... [--env SERVICE:VAR=VALUE]

In the variant:
  - every service has `network_mode: host`; `ports`, `expose`, `hostname`, `networks` and
    `build` are dropped (docker-compose 1.29 refuses host networking together with ports, and
    the check builds the image itself);
  - every `HOST:PORT` in an environment value, a command or a health check whose PORT is
    given with --port becomes `127.0.0.1:NEWPORT`, for HOST a service name, `localhost`,
    `0.0.0.0`, `127.0.0.1` or nothing (`PLAINTEXT://:9092`): services listen on 127.0.0.1 only;
  - a `redis-server` command gets `--port` and `--bind 127.0.0.1`, a `redis-cli` health check
    `-p` (Redis's port is implicit in the real file);
  - the default network is the engine's `host` network (external), so no bridge is created;
  - --env adds an environment variable to one service (a test knob of the check).

It fails, naming the place, when a published port has no --port mapping or a service name is
still used as a host name after rendering, so a new port in docker-compose.yml cannot slip
through unmapped. Needs PyYAML (Debian: python3-yaml).
"""

import argparse
import re
import sys

import yaml

LOOPBACK = "127.0.0.1"
DROPPED_SERVICE_KEYS = ("ports", "expose", "hostname", "networks", "build", "links")


class PlainDumper(yaml.SafeDumper):
    """Writes shared mappings out in full (no &anchors / *aliases)."""

    def ignore_aliases(self, data):
        return True


def fail(msg):
    sys.stderr.write(f"render-compose.py: {msg}\n")
    sys.exit(1)


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("src")
    p.add_argument("out")
    p.add_argument("--port", action="append", default=[], metavar="OLD=NEW",
                   help="container port OLD is NEW on 127.0.0.1 (repeat)")
    p.add_argument("--env", action="append", default=[], metavar="SERVICE:VAR=VALUE",
                   help="add an environment variable to a service (repeat)")
    a = p.parse_args()
    ports = {}
    for spec in a.port:
        m = re.fullmatch(r"(\d+)=(\d+)", spec)
        if not m:
            fail(f"--port {spec}: expected OLD=NEW")
        ports[m.group(1)] = m.group(2)
    extra = []
    for spec in a.env:
        m = re.fullmatch(r"([^:]+):([A-Za-z_][A-Za-z0-9_]*)=(.*)", spec)
        if not m:
            fail(f"--env {spec}: expected SERVICE:VAR=VALUE")
        extra.append(m.groups())
    return a.src, a.out, ports, extra


def rewrite(text, hosts, ports, where):
    """Point every HOST:PORT with a mapped PORT at 127.0.0.1:NEWPORT."""
    host_alt = "|".join(re.escape(h) for h in sorted(hosts, key=len, reverse=True))
    pattern = re.compile(r"(?<![A-Za-z0-9_.-])(?:(" + host_alt + r"))?:(\d+)(?![0-9])")

    def repl(m):
        host, port = m.group(1), m.group(2)
        if host is None and not m.string[: m.start()].endswith("//"):
            # A bare ':PORT' counts only right after a scheme ('PLAINTEXT://:9092').
            return m.group(0)
        if port not in ports:
            fail(f"{where}: '{text}' uses port {port} of '{host or ''}', which has no --port mapping")
        return f"{LOOPBACK}:{ports[port]}"

    return pattern.sub(repl, text)


def env_items(env):
    """Compose allows environment as a mapping or as a list of VAR=VALUE."""
    if env is None:
        return {}
    if isinstance(env, dict):
        return dict(env)
    items = {}
    for item in env:
        k, _, v = str(item).partition("=")
        items[k] = v
    return items


def main():
    src, out, ports, extra = parse_args()
    with open(src, encoding="utf-8") as f:
        doc = yaml.safe_load(f)
    services = doc.get("services") or {}
    hosts = set(services) | {"localhost", "0.0.0.0", LOOPBACK}
    for name, svc in services.items():
        hn = svc.get("hostname")
        if hn:
            hosts.add(hn)

    rendered = {}
    for name, svc in services.items():
        svc = dict(svc)
        for published in svc.get("ports") or []:
            container_port = str(published).split("/")[0].rsplit(":", 1)[-1]
            if container_port not in ports:
                fail(f"services.{name}.ports: {published}: container port {container_port} has no --port mapping")
        for key in DROPPED_SERVICE_KEYS:
            svc.pop(key, None)
        svc["network_mode"] = "host"

        if "environment" in svc:
            env = env_items(svc["environment"])
            svc["environment"] = {
                k: (rewrite(str(v), hosts, ports, f"services.{name}.environment.{k}") if v is not None else v)
                for k, v in env.items()
            }
        command = svc.get("command")
        if isinstance(command, list):
            command = [rewrite(str(c), hosts, ports, f"services.{name}.command") for c in command]
            if command and command[0] == "redis-server":
                if "6379" not in ports:
                    fail(f"services.{name}: a redis-server needs --port 6379=NEW")
                command += ["--port", ports["6379"], "--bind", LOOPBACK]
            svc["command"] = command
        elif isinstance(command, str):
            svc["command"] = rewrite(command, hosts, ports, f"services.{name}.command")

        hc = svc.get("healthcheck")
        if hc and "test" in hc:
            hc = dict(hc)
            test = hc["test"]
            if isinstance(test, list):
                test = [rewrite(str(t), hosts, ports, f"services.{name}.healthcheck") for t in test]
                if "redis-cli" in test:
                    i = test.index("redis-cli")
                    test[i + 1:i + 1] = ["-p", ports.get("6379", "6379")]
            else:
                test = rewrite(str(test), hosts, ports, f"services.{name}.healthcheck")
            hc["test"] = test
            svc["healthcheck"] = hc
        rendered[name] = svc

    for name, var, value in extra:
        if name not in rendered:
            fail(f"--env {name}:{var}: no service {name}")
        env = rendered[name].setdefault("environment", {})
        env[var] = value

    out_doc = {"services": rendered}
    if doc.get("volumes"):
        out_doc["volumes"] = doc["volumes"]
    # No bridge: the project's default network is the engine's host network.
    out_doc["networks"] = {"default": {"external": True, "name": "host"}}

    header = (
        "# Generated by scripts/deploy/render-compose.py from docker-compose.yml for the\n"
        "# deployment check (host networking, 127.0.0.1, free ports). Do not edit.\n"
    )
    with open(out, "w", encoding="utf-8") as f:
        f.write(header)
        yaml.dump(out_doc, f, Dumper=PlainDumper, sort_keys=False, default_flow_style=False, width=1000)


if __name__ == "__main__":
    main()
