#!/usr/bin/env python3
"""Cross-checks the deployment files against each other and against vitalwatch's contract.

    manifests.py --out DIR

Run by scripts/check-deploy.sh (from the repository root). The schemas say whether each
file is well-formed; this says whether they agree: the grace periods exceed the drain
deadline, the probes and the scrape point at the configured port, KEDA scales the
StatefulSet, group and topic vitalwatch actually uses and never past the partition count,
the ConfigMap's rules are the shipped ones, the image and the ConfigMap require TLS (and
only the local compose stack switches that off), the files the config reads are the
mounted Secret's, and KEDA reaches the same brokers with the same credentials. Also: the
topics compose creates (the repartition topic with the input's partition count), the
image's HEALTHCHECK (the binary's `healthcheck` with the CMD's config file), the memory
request against the measured resident set, and the image the kustomization sets.
Static group membership (kafka.group_instance_id): the pods are a StatefulSet's, each
with its own name as its id (the downward API's metadata.name), and no config file sets
one for all; compose runs one service per replica, each with its service name as a
distinct id and one container, from one shared definition, and Prometheus scrapes each
by name.

Writes into DIR, for scripts/check-deploy.sh:
  config.toml, rules.toml  the ConfigMap's files (for `vitalwatch check-config`)
  compose.env              the first compose vitalwatch replica's VITALWATCH_* environment
  compose-NAME.env         each replica's (vitalwatch-1, vitalwatch-2, ...), one a file
  compose-members.txt      the replicas' service names, one a line
  pod.env                  the StatefulSet container's VITALWATCH_* environment; a value
                           from a Secret or from the downward API becomes a stand-in,
                           named in a third column
  secret-files.tsv         per mounted Secret file: mount path, Secret, key, file path
  keda-objects.json        the KEDA documents (for the schema check)
  scale-target.json        apiVersion, kind and name of the base's workload, the target
                           KEDA must scale (for keda-validate.cjs --target)
Exit 1 on any failed check.

    manifests.py --compose-rendered FILE

runs only the checks of the compose replicas as static group members (each its own
service, with its name as a distinct group.instance.id, one container each, one shared
definition) on compose's own rendering of docker-compose.yml
(`docker compose config --format json`), anchors and merge keys resolved by compose.
"""

import argparse
import glob
import json
import os
import re
import sys
import tomllib

import yaml

DEFAULT_SHUTDOWN_SECS = 25  # config/default.toml, pipeline.shutdown_timeout_secs
# kafka.repartition_topic's built-in default: vitalwatch's internal topic, read and written
# in the consumer group, with as many partitions as the input topic (start-up refuses it
# otherwise). "" turns it off.
DEFAULT_REPARTITION_TOPIC = "patient-data-repartition"
# kafka.state_topic's built-in default: each patient's rule state, compacted, with the
# input's partition count.
DEFAULT_STATE_TOPIC = "vitalwatch-state"
# The largest resident set measured for one replica: 95-137 MiB in the field (issue 16),
# 95.6-112.3 MiB draining a backlog and 130-132 MiB with a million distinct patients
# (docs/benchmarks.md). The memory request must be above it, with headroom.
MEASURED_RSS_PEAK_MIB = 137
MEMORY_REQUEST_HEADROOM = 1.25
# `vitalwatch healthcheck` bounds its GET of /healthz to this long; the HEALTHCHECK's
# --timeout must leave it room.
HEALTHCHECK_BOUND_SECS = 5
# The readiness rule of the binary: /readyz is 200 once the consumer has received the
# group's first assignment, even an EMPTY one (a standby beyond the partition count is
# ready). A StatefulSet rollout replaces one pod at a time and goes on only once the new
# pod is ready; a static member comes back with the assignment it had, so a pod that was
# a standby (more replicas than partitions) comes back with nothing, and only this rule
# lets it (and so the rollout) go on. scripts/check-deploy.sh 7 checks the binary against
# it; if readiness ever requires partitions again, set this to False, and the replica
# counts must then stay within the partition count.
READY_WITH_EMPTY_ASSIGNMENT = True
# Static membership: the env variable of kafka.group_instance_id, and where each pod's
# value must come from (its own, stable name).
INSTANCE_ID_ENV = "VITALWATCH_KAFKA__GROUP_INSTANCE_ID"
INSTANCE_ID_FIELD = "metadata.name"
failures = 0


def check(ok, what):
    global failures
    print(("ok   " if ok else "FAIL ") + what)
    if not ok:
        failures += 1
    return ok


def load_docs(paths):
    docs = []
    for p in paths:
        with open(p, encoding="utf-8") as f:
            for d in yaml.safe_load_all(f):
                if d:
                    docs.append((p, d))
    return docs


def one(docs, kind):
    found = [d for _, d in docs if d.get("kind") == kind]
    if not check(len(found) == 1, f"k8s: exactly one {kind} (found {len(found)})"):
        return {}
    return found[0]


def mebibytes(quantity):
    """A Kubernetes memory quantity (128Mi, 1Gi, 200M, 134217728) in MiB."""
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(Ki|Mi|Gi|Ti|k|M|G|T)?", str(quantity))
    if not m:
        return None
    factor = {None: 1, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40,
              "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}[m.group(2)]
    return float(m.group(1)) * factor / 2**20


def arg_after(argv, flag):
    """The value after `flag` in an argument list, or None."""
    i = argv.index(flag) if flag in argv else -1
    return argv[i + 1] if 0 <= i < len(argv) - 1 else None


def port_of(listen):
    return int(listen.rsplit(":", 1)[1])


def seconds(duration):
    """Compose durations: 35s, 1m30s, 40 (seconds)."""
    if isinstance(duration, (int, float)):
        return float(duration)
    total, units = 0.0, {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
    for value, unit in re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", duration):
        total += float(value) * units[unit]
    return total


# librdkafka properties that name a file, and the KEDA Kafka scaler parameter that takes
# the same file's content from a TriggerAuthentication.
FILE_PROPS = {
    "ssl.ca.location": "ca",
    "ssl.certificate.location": "cert",
    "ssl.key.location": "key",
}
# librdkafka sasl.mechanism -> the KEDA Kafka trigger's `sasl`.
KEDA_SASL = {"PLAIN": "plaintext", "SCRAM-SHA-256": "scram_sha256", "SCRAM-SHA-512": "scram_sha512"}
USERNAME_ENV = "VITALWATCH_KAFKA__CLIENT__SASL__USERNAME"
PASSWORD_ENV = "VITALWATCH_KAFKA__CLIENT__SASL__PASSWORD"


def env_str(value):
    """A compose/Kubernetes environment value as the process sees it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def write_env(path, env):
    with open(path, "w", encoding="utf-8") as f:
        for row in env:
            f.write("\t".join(row) + "\n")


def env_map(environment):
    """A compose service's environment, a mapping or a list of KEY=VALUE, as a dict."""
    if isinstance(environment, list):
        return dict(item.split("=", 1) if "=" in item else (item, None) for item in environment)
    return dict(environment or {})


# The compose services of the vitalwatch replicas: one service per static group member,
# named vitalwatch-1, vitalwatch-2, ... (compose cannot give the replicas of one service
# different environments).
COMPOSE_MEMBER = re.compile(r"vitalwatch-(\d+)")
# What may differ between two replicas' services: their name, and which one builds.
COMPOSE_PER_MEMBER_KEYS = {"container_name", "build", "pull_policy", "environment"}


def compose_members(services, view):
    """Checks compose's vitalwatch replicas as static group members and returns their
    service names. `view` says whose reading of docker-compose.yml this is (PyYAML's, or
    compose's own rendering, `docker compose config --format json`)."""
    members = sorted((n for n in services if COMPOSE_MEMBER.fullmatch(n)),
                     key=lambda n: int(COMPOSE_MEMBER.fullmatch(n).group(1)))
    check(len(members) >= 2, f"compose ({view}): at least two vitalwatch replicas in the group: {', '.join(members)}")
    if not members:
        return members
    image = services[members[0]].get("image")
    # Any other service running the image's `run` would be a member without an id of its own.
    runners = [n for n, svc in services.items() if svc.get("image") == image and n not in members
               and "loadgen" not in (svc.get("command") or [])]
    check(not runners, f"compose ({view}): every service running vitalwatch from {image} but loadgen is a "
          f"vitalwatch-N replica (others: {', '.join(runners) or 'none'})")
    ids = {}
    for name in members:
        svc = services[name]
        iid = env_str(env_map(svc.get("environment")).get(INSTANCE_ID_ENV)).strip()
        ids[name] = iid
        replicas = svc.get("scale", (svc.get("deploy") or {}).get("replicas", 1))
        check(iid == name and svc.get("container_name") == name and replicas in (None, 1),
              f"compose ({view}): {name} is one static member: {INSTANCE_ID_ENV}={iid or '(unset)'} and "
              f"container_name {svc.get('container_name')} are its service name, and it runs one container "
              f"(replicas {replicas}; container_name makes compose refuse --scale)")
    check(len(set(ids.values())) == len(ids) and all(ids.values()),
          f"compose ({view}): the replicas' group.instance.id are distinct (two members with one id fence each "
          f"other): {', '.join(f'{n}={i}' for n, i in ids.items())}")

    def shared(svc):
        common = {k: v for k, v in svc.items() if k not in COMPOSE_PER_MEMBER_KEYS}
        common["environment"] = {k: env_str(v) for k, v in env_map(svc.get("environment")).items()
                                 if k != INSTANCE_ID_ENV}
        return common

    first = shared(services[members[0]])
    differ = [n for n in members[1:] if shared(services[n]) != first]
    check(not differ, f"compose ({view}): the replicas share one definition (x-vitalwatch): they differ only in "
          f"their name, instance id and build ({', '.join(differ) or 'none'} differ in more)")
    builders = [n for n in members if services[n].get("build")]
    users = [n for n, svc in services.items() if svc.get("image") == image and n not in builders]
    pulling = [n for n in users if services[n].get("pull_policy") != "never"]
    check(len(builders) == 1 and not pulling,
          f"compose ({view}): one service builds {image} ({', '.join(builders) or 'none'}); the others that use "
          f"it ({', '.join(users)}) never pull it" + (f" (pull_policy is not never: {', '.join(pulling)})" if pulling else ""))
    return members


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out")
    ap.add_argument("--compose-rendered", metavar="FILE",
                    help="only the static-membership checks of the compose replicas, on compose's own "
                         "rendering of docker-compose.yml (`docker compose config --format json`)")
    args = ap.parse_args()
    if args.compose_rendered:
        with open(args.compose_rendered, encoding="utf-8") as f:
            rendered = json.load(f)
        members = compose_members(rendered.get("services", {}), "as compose renders it")
        print(f"compose: {len(members)} replica(s), {failures} problem(s)")
        return 1 if failures else 0
    if not args.out:
        ap.error("--out DIR is required (or --compose-rendered FILE)")
    out = args.out
    os.makedirs(out, exist_ok=True)

    # The image's configuration.
    with open("deploy/docker/config.toml", "rb") as f:
        image_cfg = tomllib.load(f)
    image_port = port_of(image_cfg["http"]["listen"])
    with open("Dockerfile", encoding="utf-8") as f:
        dockerfile = f.read()
    exposed = re.findall(r"^EXPOSE\s+(\d+)", dockerfile, re.M)
    check(exposed == [str(image_port)],
          f"Dockerfile: EXPOSE {' '.join(exposed)} is http.listen's port {image_port} (deploy/docker/config.toml)")
    check(image_cfg["rules"]["file"] == "/etc/vitalwatch/rules.toml"
          and "COPY config/rules.toml /etc/vitalwatch/rules.toml" in dockerfile,
          "Dockerfile: config/rules.toml is copied to the image config's rules.file")
    check("SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt" in dockerfile
          and re.search(r"apt-get install[^&]*\bca-certificates\b", dockerfile) is not None,
          "Dockerfile: installs ca-certificates and points the vendored OpenSSL at it (SSL_CERT_FILE)")
    check(image_cfg.get("log", {}).get("format") == "json", "image config: log.format = json")
    # The HEALTHCHECK: the binary's own `healthcheck`, reading the file `run` reads (so
    # http.listen is found wherever the deployment sets it), bounded within --timeout.
    joined = re.sub(r"\\\n", " ", dockerfile)
    hc = re.search(r"^HEALTHCHECK\s+(.*?)\s+CMD\s+(\[.*\])\s*$", joined, re.M)
    cmd = re.findall(r"^CMD\s+(\[.*\])\s*$", joined, re.M)
    entrypoint = re.findall(r"^ENTRYPOINT\s+(\[.*\])\s*$", joined, re.M)
    hc_argv = json.loads(hc.group(2)) if hc else []
    run_argv = json.loads(entrypoint[-1]) + json.loads(cmd[-1]) if cmd and entrypoint else []
    run_cfg = arg_after(run_argv, "--config")
    check(hc_argv[:2] == ["vitalwatch", "healthcheck"] and run_argv[:2] == ["vitalwatch", "run"]
          and run_cfg is not None and arg_after(hc_argv, "--config") == run_cfg,
          f"Dockerfile: HEALTHCHECK runs `vitalwatch healthcheck` with the CMD's config file "
          f"({' '.join(hc_argv) or 'none'}; CMD {' '.join(run_argv)})")
    timeout = re.search(r"--timeout=(\S+)", hc.group(1)) if hc else None
    check(timeout is not None and seconds(timeout.group(1)) > HEALTHCHECK_BOUND_SECS,
          f"Dockerfile: HEALTHCHECK --timeout {timeout.group(1) if timeout else '(default 30s)'} "
          f"> the {HEALTHCHECK_BOUND_SECS} s bound of `vitalwatch healthcheck`")
    check("healthcheck.sh" not in dockerfile and not os.path.exists("deploy/docker/healthcheck.sh"),
          "Dockerfile: no HEALTHCHECK script (it read only VITALWATCH_HTTP__LISTEN, not a mounted config file)")
    check(image_cfg.get("kafka", {}).get("require_tls") is True,
          "image config: kafka.require_tls = true (the image refuses brokers without TLS)")

    # docker-compose.yml
    with open("docker-compose.yml", encoding="utf-8") as f:
        compose = yaml.safe_load(f)
    services = compose.get("services", {})
    expected = {"kafka", "topic-init", "vitalwatch-1", "vitalwatch-2", "loadgen", "prometheus", "grafana"}
    check(expected <= set(services), f"compose: services {', '.join(sorted(expected))}")
    members = compose_members(services, "PyYAML") or ["vitalwatch-1"]
    # The replicas share their definition (checked above): the first stands for all.
    vw = services.get(members[0], {})
    grace = seconds(vw.get("stop_grace_period", "10s"))
    shutdown = image_cfg.get("pipeline", {}).get("shutdown_timeout_secs", DEFAULT_SHUTDOWN_SECS)
    check(grace > shutdown,
          f"compose: vitalwatch stop_grace_period {grace:g}s > shutdown_timeout_secs {shutdown}s")
    env = env_map(vw.get("environment"))
    check(env.get("VITALWATCH_LOG__FORMAT") == "json", "compose: vitalwatch logs JSON")
    # The protocol of the broker listener compose's vitalwatch connects to, from the
    # kafka service's listener settings.
    kenv = services.get("kafka", {}).get("environment", {})
    proto_of = dict(item.split(":", 1) for item in
                    str(kenv.get("KAFKA_LISTENER_SECURITY_PROTOCOL_MAP", "")).split(",") if ":" in item)
    advertised = {}
    for item in str(kenv.get("KAFKA_ADVERTISED_LISTENERS", "")).split(","):
        if "://" in item:
            name, addr = item.split("://", 1)
            advertised[addr] = proto_of.get(name, name)
    bootstrap = env_str(env.get("VITALWATCH_KAFKA__BOOTSTRAP_SERVERS"))
    listener = advertised.get(bootstrap, "?")
    require_tls = env_str(env.get("VITALWATCH_KAFKA__REQUIRE_TLS", "")).lower()
    if listener in ("SSL", "SASL_SSL"):
        check(require_tls in ("", "true"),
              f"compose: vitalwatch keeps kafka.require_tls (listener {bootstrap} is {listener})")
    else:
        check(require_tls == "false",
              f"compose: vitalwatch sets VITALWATCH_KAFKA__REQUIRE_TLS=false, the local stack's only "
              f"exception: its broker listener {bootstrap} is {listener}")
    # compose.env: the first replica's environment; compose-<service>.env: each one's.
    for name in members:
        rows = [(k, env_str(v)) for k, v in sorted(env_map(services.get(name, {}).get("environment")).items())
                if k.startswith("VITALWATCH_")]
        write_env(os.path.join(out, f"compose-{name}.env"), rows)
        if name == members[0]:
            write_env(os.path.join(out, "compose.env"), rows)
    with open(os.path.join(out, "compose-members.txt"), "w", encoding="utf-8") as f:
        f.write("".join(f"{name}\n" for name in members))
    init = " ".join(services.get("topic-init", {}).get("command", []))
    topics = {m.group(1): int(m.group(2)) for m in
              re.finditer(r"--topic (\S+) --partitions (\d+) --replication-factor 1", init)}
    check(topics.get("patient-data") == 12 and {"patient-alerts", "patient-data-dlq"} <= set(topics),
          f"compose: topic-init creates patient-data (12 partitions), patient-alerts, patient-data-dlq: {topics}")
    partitions = topics.get("patient-data", 12)
    repartition = env_str(env.get("VITALWATCH_KAFKA__REPARTITION_TOPIC", DEFAULT_REPARTITION_TOPIC))
    if repartition:
        check(topics.get(repartition) == partitions,
              f"compose: topic-init creates {repartition} (kafka.repartition_topic) with patient-data's "
              f"{partitions} partitions (it has {topics.get(repartition, 'none')}): vitalwatch refuses to start otherwise")
    state = env_str(env.get("VITALWATCH_KAFKA__STATE_TOPIC", DEFAULT_STATE_TOPIC))
    if state:
        check(topics.get(state) == partitions,
              f"compose: topic-init creates {state} (kafka.state_topic) with patient-data's "
              f"{partitions} partitions (it has {topics.get(state, 'none')}): vitalwatch refuses to start otherwise")
        check(re.search(rf"--topic {re.escape(state)} [^\n]*--config cleanup.policy=compact", init) is not None,
              f"compose: topic-init creates {state} compacted (cleanup.policy=compact): one record per patient")
    loadgen = services.get("loadgen", {})
    check(loadgen.get("image") == vw.get("image") and "loadgen" in loadgen.get("command", []),
          "compose: loadgen runs `vitalwatch loadgen` from the vitalwatch image")
    waits = loadgen.get("depends_on", {})
    waits = set(waits) if isinstance(waits, (dict, list)) else set()
    check(set(members) <= waits,
          f"compose: loadgen starts after every vitalwatch replica (depends_on {', '.join(sorted(waits))})")
    with open("deploy/prometheus/prometheus.yml", encoding="utf-8") as f:
        prom = yaml.safe_load(f)
    jobs = [job for job in prom.get("scrape_configs", []) if job.get("job_name") == "vitalwatch"]
    targets = sorted(t for job in jobs for c in job.get("static_configs", []) for t in c.get("targets", []))
    want = sorted(f"{name}:{image_port}" for name in members)
    check(len(jobs) == 1 and targets == want,
          f"prometheus: the vitalwatch job scrapes every compose replica by name on port {image_port}, "
          f"and nothing else: {', '.join(targets) or 'no targets'} (compose has {', '.join(want)})")

    # Kubernetes
    base = sorted(p for p in glob.glob("deploy/k8s/base/*.yaml") if not p.endswith("kustomization.yaml"))
    docs = load_docs(base)
    cm, sts, svc, pdb = (one(docs, k) for k in ("ConfigMap", "StatefulSet", "Service", "PodDisruptionBudget"))
    deployments = [d for _, d in docs if d.get("kind") == "Deployment"]
    check(not deployments,
          "k8s: no Deployment: its pods are renamed at every rollout, so their group.instance.id would be "
          "too, and every rollout would leave the old names' partitions unread for session.timeout.ms")
    data = cm.get("data", {})
    try:
        k8s_cfg = tomllib.loads(data.get("config.toml", ""))
    except tomllib.TOMLDecodeError as e:
        check(False, f"k8s: ConfigMap config.toml parses as TOML: {e}")
        k8s_cfg = {}
    with open(os.path.join(out, "config.toml"), "w", encoding="utf-8") as f:
        f.write(data.get("config.toml", ""))
    with open(os.path.join(out, "rules.toml"), "w", encoding="utf-8") as f:
        f.write(data.get("rules.toml", ""))
    with open("config/rules.toml", encoding="utf-8") as f:
        check(data.get("rules.toml") == f.read(),
              "k8s: ConfigMap rules.toml is identical to config/rules.toml")
    kafka = k8s_cfg.get("kafka", {})
    k8s_port = port_of(k8s_cfg.get("http", {}).get("listen", "0.0.0.0:9464"))
    k8s_shutdown = k8s_cfg.get("pipeline", {}).get("shutdown_timeout_secs", DEFAULT_SHUTDOWN_SECS)
    check(k8s_cfg.get("log", {}).get("format") == "json", "k8s: ConfigMap config sets log.format = json")
    client = {}

    def flatten(prefix, node):
        for k, v in node.items():
            name = f"{prefix}.{k}" if prefix else k
            if isinstance(v, dict):
                flatten(name, v)
            else:
                client[name] = v

    flatten("", kafka.get("client", {}))
    protocol = str(client.get("security.protocol", "plaintext")).lower()
    mechanism = str(client.get("sasl.mechanism", client.get("sasl.mechanisms", "GSSAPI"))).upper()
    uses_tls = protocol in ("ssl", "sasl_ssl")
    uses_sasl = protocol.startswith("sasl_")
    check(kafka.get("require_tls") is True and uses_tls,
          f"k8s: ConfigMap config requires TLS (kafka.require_tls = true, security.protocol {protocol})")

    sts_spec = sts.get("spec", {})
    sts_name = sts.get("metadata", {}).get("name")
    spec = sts_spec.get("template", {}).get("spec", {})
    containers = spec.get("containers", [{}])
    c = containers[0] if containers else {}
    tgp = spec.get("terminationGracePeriodSeconds", 30)
    check(tgp > k8s_shutdown,
          f"k8s: terminationGracePeriodSeconds {tgp} > pipeline.shutdown_timeout_secs {k8s_shutdown}")
    ports = {p.get("name"): p.get("containerPort") for p in c.get("ports", [])}
    check(ports.get("http") == k8s_port, f"k8s: container port http = {k8s_port} (http.listen)")
    live = c.get("livenessProbe", {}).get("httpGet", {})
    ready = c.get("readinessProbe", {}).get("httpGet", {})
    check(live.get("path") == "/healthz" and live.get("port") in ("http", k8s_port),
          "k8s: liveness probe GET /healthz on the http port")
    check(ready.get("path") == "/readyz" and ready.get("port") in ("http", k8s_port),
          "k8s: readiness probe GET /readyz on the http port")
    res = c.get("resources", {})
    check(all(k in res.get(s, {}) for s in ("requests", "limits") for k in ("cpu", "memory")),
          "k8s: cpu and memory requests and limits")
    req_mib = mebibytes(res.get("requests", {}).get("memory"))
    lim_mib = mebibytes(res.get("limits", {}).get("memory"))
    check(req_mib is not None and lim_mib is not None
          and MEASURED_RSS_PEAK_MIB * MEMORY_REQUEST_HEADROOM <= req_mib <= lim_mib,
          f"k8s: memory request {res.get('requests', {}).get('memory')} >= the measured peak RSS "
          f"{MEASURED_RSS_PEAK_MIB} MiB x {MEMORY_REQUEST_HEADROOM} headroom, and <= the limit "
          f"{res.get('limits', {}).get('memory')}")
    # The StatefulSet's shape for static membership.
    update = sts_spec.get("updateStrategy", {})
    check(update.get("type") == "RollingUpdate"
          and update.get("rollingUpdate", {}).get("maxUnavailable", 1) == 1
          and update.get("rollingUpdate", {}).get("partition", 0) == 0,
          f"k8s: StatefulSet updateStrategy RollingUpdate, one pod at a time, every ordinal "
          f"(delete-then-create, each ready before the next): {update}")
    check(sts_spec.get("podManagementPolicy") == "Parallel",
          f"k8s: StatefulSet podManagementPolicy Parallel, so scale-out starts its pods together "
          f"(it has {sts_spec.get('podManagementPolicy', 'none: OrderedReady, one by one')})")
    check(not sts_spec.get("volumeClaimTemplates"),
          "k8s: StatefulSet without volumeClaimTemplates (patient state lives in kafka.state_topic)")
    base_replicas = sts_spec.get("replicas", 1)
    if base_replicas <= partitions:
        check(True, f"k8s: the base's {base_replicas} replicas <= {partitions} partitions: every member can hold one")
    else:
        check(READY_WITH_EMPTY_ASSIGNMENT,
              f"k8s: the base's {base_replicas} replicas for {partitions} partitions: a rollout waits for each "
              f"pod to be ready, and the members left without a partition turn ready only because /readyz "
              f"accepts an empty assignment (scripts/check-deploy.sh 7 checks the binary)")
    svc_name = svc.get("metadata", {}).get("name")
    check(bool(sts_spec.get("serviceName")) and sts_spec.get("serviceName") == svc_name
          and svc.get("spec", {}).get("clusterIP") == "None",
          f"k8s: StatefulSet serviceName {sts_spec.get('serviceName')!r} is the base's headless Service {svc_name!r}")
    k8s_repartition = kafka.get("repartition_topic", DEFAULT_REPARTITION_TOPIC)
    check(k8s_repartition in ("", repartition),
          f"k8s: the ConfigMap's kafka.repartition_topic ({k8s_repartition!r}, the default unless set) is "
          f"the one compose creates ({repartition!r})")
    k8s_state = kafka.get("state_topic", DEFAULT_STATE_TOPIC)
    check(k8s_state in ("", state),
          f"k8s: the ConfigMap's kafka.state_topic ({k8s_state!r}, the default unless set) is "
          f"the one compose creates ({state!r})")

    # The image the kustomization sets: the StatefulSet's container image by name (so that
    # `kustomize edit set image vitalwatch=REGISTRY/vitalwatch:TAG` in an overlay reaches
    # it), with the crate's version as its tag.
    with open("deploy/k8s/base/kustomization.yaml", encoding="utf-8") as f:
        kust = yaml.safe_load(f)
    with open("Cargo.toml", "rb") as f:
        version = tomllib.load(f).get("package", {}).get("version")
    images = {i.get("name"): i for i in kust.get("images", [])}
    image = images.get(c.get("image"), {})
    check(bool(image) and str(image.get("newTag")) == version,
          f"k8s: the kustomization's images entry {c.get('image')!r} is the container's image, tag "
          f"{image.get('newTag')} = Cargo.toml version {version} (an overlay sets the registry: docs/deploy.md)")
    args = c.get("args", [])
    cfg_path = args[args.index("--config") + 1] if "--config" in args else None
    mounts = {m.get("mountPath"): m.get("name") for m in c.get("volumeMounts", [])}
    cm_volumes = {v.get("name") for v in spec.get("volumes", [])
                  if v.get("configMap", {}).get("name") == cm.get("metadata", {}).get("name")}
    mounted = [p for p, n in mounts.items() if n in cm_volumes]
    rules_file = k8s_cfg.get("rules", {}).get("file", "")
    check(bool(cfg_path) and bool(mounted)
          and os.path.join(mounted[0], "config.toml") == cfg_path
          and os.path.join(mounted[0], "rules.toml") == rules_file,
          f"k8s: --config {cfg_path} and rules.file {rules_file} are the ConfigMap's files, mounted at {mounted}")

    # The credentials: files from a mounted Secret, named by the config.
    pod_sc = spec.get("securityContext", {})
    secret_vols = {v.get("name"): v.get("secret") for v in spec.get("volumes", []) if "secret" in v}
    secret_files = {}  # absolute path in the container -> (secret, key)
    tsv = []
    for m in c.get("volumeMounts", []):
        vol = secret_vols.get(m.get("name"))
        if vol is None:
            continue
        name, mp = vol.get("secretName"), m.get("mountPath")
        items = vol.get("items") or []
        mode = vol.get("defaultMode", 0o644)
        check(m.get("readOnly") is True, f"k8s: Secret {name} is mounted read-only at {mp}")
        check(vol.get("optional") is not True,
              f"k8s: Secret {name} is not optional (a pod without it shows the missing Secret instead of failing later)")
        check(not mode & 0o007 and (mode & 0o040 and pod_sc.get("fsGroup") == pod_sc.get("runAsGroup")
                                    or mode & 0o400 and pod_sc.get("runAsUser") == 0),
              f"k8s: Secret {name} files are mode {mode:04o}: not world-readable, readable by the pod's "
              f"user through fsGroup {pod_sc.get('fsGroup')}")
        check(bool(items), f"k8s: Secret {name} volume lists its keys (items), so a missing key is named at mount")
        for it in items:
            path = os.path.join(mp, it.get("path", ""))
            secret_files[path] = (name, it.get("key"))
            tsv.append((mp, name, it.get("key"), it.get("path")))
    write_env(os.path.join(out, "secret-files.tsv"), tsv)

    def source_of(config_key, path):
        ok = check(path in secret_files,
                   f"k8s: {config_key} {path} is a file of a mounted Secret ({', '.join(sorted(secret_files)) or 'none'})")
        return secret_files.get(path) if ok else None

    pw_file = kafka.get("sasl_password_file", "")
    file_sources = {}  # KEDA parameter -> (secret, key) the pods read
    if uses_sasl:
        check(bool(pw_file) and "sasl.password" not in client,
              "k8s: the SASL password comes from kafka.sasl_password_file, not from the ConfigMap")
    if pw_file:
        file_sources["password"] = source_of("kafka.sasl_password_file", pw_file)
    for prop, param in FILE_PROPS.items():
        if prop in client and str(client[prop]).startswith("/"):
            file_sources[param] = source_of(f'kafka.client."{prop}"', client[prop])

    pod_env = []
    env_secret = {}
    env_field = {}
    for e in c.get("env", []):
        ref = e.get("valueFrom", {}).get("secretKeyRef")
        field = e.get("valueFrom", {}).get("fieldRef")
        if ref:
            env_secret[e.get("name")] = (ref.get("name"), ref.get("key"))
            check(ref.get("optional") is not True, f"k8s: env {e.get('name')} from Secret {ref.get('name')} is not optional")
            pod_env.append((e.get("name"), f"stand-in-for-{ref.get('key')}", f"Secret {ref.get('name')}, key {ref.get('key')}"))
        elif field:
            path = field.get("fieldPath")
            env_field[e.get("name")] = path
            # The first pod's name for metadata.name, as the kubelet would set it.
            if path == "metadata.name":
                value, what = f"{sts_name}-0", "the downward API's metadata.name: the first pod's name"
            else:
                value, what = f"stand-in-for-{path}", f"the downward API's {path}"
            pod_env.append((e.get("name"), value, what))
        elif "value" in e:
            pod_env.append((e.get("name"), env_str(e.get("value"))))
    # Static membership: each pod's group.instance.id is its own name, which a StatefulSet
    # keeps across restarts and never gives two pods at once; a value from anywhere else
    # (a literal, the ConfigMap) would be one id for every pod, and they would fence each
    # other.
    instance_envs = [e for e in c.get("env", []) if e.get("name") == INSTANCE_ID_ENV]
    check(len(instance_envs) == 1 and env_field.get(INSTANCE_ID_ENV) == INSTANCE_ID_FIELD,
          f"k8s: the StatefulSet sets {INSTANCE_ID_ENV} from the downward API's {INSTANCE_ID_FIELD} "
          f"(each pod's stable, unique name is its group.instance.id): "
          f"{instance_envs or 'not set'}")
    for where, cfg in (("the ConfigMap's config.toml", kafka), ("the image's config (deploy/docker/config.toml)",
                                                               image_cfg.get("kafka", {}))):
        check(str(cfg.get("group_instance_id", "")).strip() == "",
              f"k8s: {where} sets no kafka.group_instance_id (one value read by every replica would fence them)")
    write_env(os.path.join(out, "pod.env"), [r for r in pod_env if r[0].startswith("VITALWATCH_")])
    check(PASSWORD_ENV not in {e.get("name") for e in c.get("env", [])},
          f"k8s: no {PASSWORD_ENV} in the pod's environment (the password is a file)")
    username_source = None
    if uses_sasl:
        if USERNAME_ENV in env_secret:
            username_source = env_secret[USERNAME_ENV]
            check("sasl.username" not in client,
                  f"k8s: sasl.username has one source, {USERNAME_ENV} from Secret {username_source[0]}, "
                  f"key {username_source[1]} (not also in the ConfigMap)")
        else:
            check(False, f"k8s: the SASL user name comes from the Secret ({USERNAME_ENV}), where KEDA reads it too")

    pod_labels = sts_spec.get("template", {}).get("metadata", {}).get("labels", {})

    def selects(selector):
        return bool(selector) and all(pod_labels.get(k) == v for k, v in selector.items())

    check(selects(sts_spec.get("selector", {}).get("matchLabels")),
          "k8s: the StatefulSet's selector matches its pod template's labels")
    check(selects(svc.get("spec", {}).get("selector")), "k8s: the Service selects the StatefulSet's pods")
    check(selects(pdb.get("spec", {}).get("selector", {}).get("matchLabels")),
          "k8s: the PodDisruptionBudget selects the StatefulSet's pods")
    ann = svc.get("metadata", {}).get("annotations", {})
    check(ann.get("prometheus.io/scrape") == "true" and ann.get("prometheus.io/port") == str(k8s_port),
          f"k8s: Service annotated for Prometheus scraping on port {k8s_port}")

    # KEDA: structure and agreement; the schema check is done by keda-validate.cjs.
    keda_files = sorted(p for p in glob.glob("deploy/k8s/keda/*.yaml") if not p.endswith("kustomization.yaml"))
    with open("deploy/k8s/keda/kustomization.yaml", encoding="utf-8") as f:
        keda_kust = yaml.safe_load(f)
    resources = keda_kust.get("resources", [])
    # The overlay drops the base's `replicas`, which would otherwise reset KEDA's count on
    # every apply; a patch whose target matches nothing is silently ignored by kustomize.
    drops = [pt for pt in keda_kust.get("patches", [])
             if pt.get("target", {}).get("kind") == sts.get("kind")
             and pt.get("target", {}).get("name") == sts_name
             and "path: /spec/replicas" in str(pt.get("patch", "")) and "op: remove" in str(pt.get("patch", ""))]
    check(len(drops) == 1,
          f"keda: the kustomization removes /spec/replicas from the {sts.get('kind')} {sts_name} (KEDA owns the count)")
    check(all(os.path.basename(p) in resources for p in keda_files),
          f"keda: the kustomization lists every file: {', '.join(os.path.basename(p) for p in keda_files)}")
    keda = load_docs(keda_files)
    objects = [d for _, d in keda]
    with open(os.path.join(out, "keda-objects.json"), "w", encoding="utf-8") as f:
        json.dump(objects, f)
    with open(os.path.join(out, "scale-target.json"), "w", encoding="utf-8") as f:
        json.dump({"apiVersion": sts.get("apiVersion"), "kind": sts.get("kind"), "name": sts_name}, f)
    scaled = [d for d in objects if d.get("kind") == "ScaledObject"]
    auths = {d.get("metadata", {}).get("name"): d for d in objects if d.get("kind") == "TriggerAuthentication"}
    check(len(scaled) == 1, f"keda: one ScaledObject (found {len(scaled)})")
    for so in scaled:
        s = so.get("spec", {})
        check(so.get("apiVersion") == "keda.sh/v1alpha1" and so.get("kind") == "ScaledObject",
              f"keda: {so.get('kind')} {so.get('apiVersion')} is a keda.sh/v1alpha1 ScaledObject")
        # KEDA's defaults: apiVersion apps/v1, kind Deployment.
        target = s.get("scaleTargetRef", {})
        check(target.get("name") == sts_name
              and target.get("kind", "Deployment") == sts.get("kind")
              and target.get("apiVersion", "apps/v1") == sts.get("apiVersion"),
              f"keda: scaleTargetRef is the {sts.get('apiVersion')} {sts.get('kind')} {sts_name} (with KEDA's "
              f"defaults it is {target.get('apiVersion', 'apps/v1')} {target.get('kind', 'Deployment')} {target.get('name')})")
        mx, mn = s.get("maxReplicaCount"), s.get("minReplicaCount", 0)
        check(isinstance(mx, int) and isinstance(mn, int) and 1 <= mn <= mx <= partitions,
              f"keda: minReplicaCount {mn} <= maxReplicaCount {mx} <= {partitions} partitions of patient-data")
        # A rollout at maxReplicaCount: the StatefulSet replaces its pods delete-then-create,
        # one at a time, with no surge, so it never runs more members than maxReplicaCount,
        # each with a partition. More replicas than partitions (a base whose replicas were
        # raised past them) leave members with nothing, and a static member comes back from
        # a restart with what it had: only READY_WITH_EMPTY_ASSIGNMENT lets such a pod
        # turn ready, and the rollout, which waits for each pod to be ready, go on.
        if isinstance(mx, int):
            check(mx <= partitions,
                  f"keda: a rollout at maxReplicaCount runs at most {mx} pods (a StatefulSet has no surge) "
                  f"for {partitions} partitions")
        triggers = [t for t in s.get("triggers", []) if t.get("type") == "kafka"]
        if not check(len(triggers) == 1, "keda: one kafka trigger"):
            continue
        trig = triggers[0]
        md = trig.get("metadata", {})
        check(md.get("consumerGroup") == kafka.get("group_id")
              and md.get("topic") == kafka.get("input_topic")
              and md.get("bootstrapServers") == kafka.get("bootstrap_servers"),
              "keda: trigger's consumerGroup, topic and bootstrapServers are the ConfigMap's")
        check(str(md.get("lagThreshold", "")).isdigit(), "keda: lagThreshold is a whole number")
        check(md.get("allowIdleConsumers", "false") == "false",
              "keda: allowIdleConsumers false (never more replicas than partitions)")

        # The same protocol: TLS and the SASL mechanism in the trigger, the credentials
        # from a TriggerAuthentication reading what the pods read.
        want_tls = "enable" if uses_tls else "disable"
        check(md.get("tls", "disable") == want_tls,
              f"keda: trigger tls {md.get('tls', 'disable')!r}, as security.protocol {protocol}")
        want_sasl = KEDA_SASL.get(mechanism, f"? ({mechanism})") if uses_sasl else "none"
        check(md.get("sasl", "none") == want_sasl,
              f"keda: trigger sasl {md.get('sasl', 'none')!r}, as sasl.mechanism {mechanism if uses_sasl else '(none)'}")
        ref = trig.get("authenticationRef")
        if not (uses_tls or uses_sasl):
            continue
        if not check(bool(ref) and ref.get("kind", "TriggerAuthentication") == "TriggerAuthentication"
                     and ref.get("name") in auths,
                     f"keda: the trigger's authenticationRef names a TriggerAuthentication here ({ref})"):
            continue
        ta = auths[ref["name"]].get("spec", {})
        params = {}
        for r in ta.get("secretTargetRef", []):
            params[r.get("parameter")] = (r.get("name"), r.get("key"))
        for p in ("sasl", "tls"):
            check(p not in params, f"keda: {p} only in the trigger, not also in the TriggerAuthentication")
        want = dict(file_sources)
        if uses_sasl:
            want["username"] = username_source
        for param, source in sorted(want.items()):
            if source is None:
                continue
            check(params.get(param) == source,
                  f"keda: TriggerAuthentication {param} is Secret {source[0]}, key {source[1]}, as the pods read it"
                  + ("" if params.get(param) == source else f" (it has {params.get(param)})"))
        extra = sorted(set(params) - set(want))
        check(not extra, f"keda: no TriggerAuthentication parameter the pods do not use ({', '.join(extra) or 'none'})")

    print(f"manifests: {failures} problem(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
