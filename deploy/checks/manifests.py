#!/usr/bin/env python3
"""Cross-checks the deployment files against each other and against vitalwatch's contract.

    manifests.py --out DIR

Run by scripts/check-deploy.sh (from the repository root). The schemas say whether each
file is well-formed; this says whether they agree: the grace periods exceed the drain
deadline, the probes and the scrape point at the configured port, KEDA scales the
Deployment, group and topic vitalwatch actually uses and never past the partition count,
the ConfigMap's rules are the shipped ones. Writes into DIR the ConfigMap's config.toml
and rules.toml (for `vitalwatch check-config`) and scaledobjects.json (for the KEDA
schema check). Exit 1 on any failed check.
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


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    out = ap.parse_args().out
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

    # docker-compose.yml
    with open("docker-compose.yml", encoding="utf-8") as f:
        compose = yaml.safe_load(f)
    services = compose.get("services", {})
    expected = {"kafka", "topic-init", "vitalwatch", "loadgen", "prometheus", "grafana"}
    check(expected <= set(services), f"compose: services {', '.join(sorted(expected))}")
    vw = services.get("vitalwatch", {})
    check(vw.get("deploy", {}).get("replicas") == 2, "compose: vitalwatch runs 2 replicas")
    grace = seconds(vw.get("stop_grace_period", "10s"))
    shutdown = image_cfg.get("pipeline", {}).get("shutdown_timeout_secs", DEFAULT_SHUTDOWN_SECS)
    check(grace > shutdown,
          f"compose: vitalwatch stop_grace_period {grace:g}s > shutdown_timeout_secs {shutdown}s")
    env = vw.get("environment", {})
    check(env.get("VITALWATCH_LOG__FORMAT") == "json", "compose: vitalwatch logs JSON")
    init = " ".join(services.get("topic-init", {}).get("command", []))
    topics = {m.group(1): int(m.group(2)) for m in
              re.finditer(r"--topic (\S+) --partitions (\d+) --replication-factor 1", init)}
    check(topics.get("patient-data") == 12 and {"patient-alerts", "patient-data-dlq"} <= set(topics),
          f"compose: topic-init creates patient-data (12 partitions), patient-alerts, patient-data-dlq: {topics}")
    partitions = topics.get("patient-data", 12)
    loadgen = services.get("loadgen", {})
    check(loadgen.get("image") == vw.get("image") and "loadgen" in loadgen.get("command", []),
          "compose: loadgen runs `vitalwatch loadgen` from the vitalwatch image")
    with open("deploy/prometheus/prometheus.yml", encoding="utf-8") as f:
        prom = yaml.safe_load(f)
    sd = [c for job in prom.get("scrape_configs", []) for c in job.get("dns_sd_configs", [])]
    check(any("vitalwatch" in c.get("names", []) and c.get("port") == image_port for c in sd),
          f"prometheus: DNS discovery of every vitalwatch replica on port {image_port}")

    # Kubernetes
    base = sorted(p for p in glob.glob("deploy/k8s/base/*.yaml") if not p.endswith("kustomization.yaml"))
    docs = load_docs(base)
    cm, dep, svc, pdb = (one(docs, k) for k in ("ConfigMap", "Deployment", "Service", "PodDisruptionBudget"))
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

    spec = dep.get("spec", {}).get("template", {}).get("spec", {})
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
    pod_labels = dep.get("spec", {}).get("template", {}).get("metadata", {}).get("labels", {})

    def selects(selector):
        return bool(selector) and all(pod_labels.get(k) == v for k, v in selector.items())

    check(selects(svc.get("spec", {}).get("selector")), "k8s: the Service selects the Deployment's pods")
    check(selects(pdb.get("spec", {}).get("selector", {}).get("matchLabels")),
          "k8s: the PodDisruptionBudget selects the Deployment's pods")
    ann = svc.get("metadata", {}).get("annotations", {})
    check(ann.get("prometheus.io/scrape") == "true" and ann.get("prometheus.io/port") == str(k8s_port),
          f"k8s: Service annotated for Prometheus scraping on port {k8s_port}")

    # KEDA: structure and agreement; the schema check is done by keda-validate.cjs.
    keda = load_docs(["deploy/k8s/keda/scaledobject.yaml"])
    scaled = [d for _, d in keda]
    with open(os.path.join(out, "scaledobjects.json"), "w", encoding="utf-8") as f:
        json.dump(scaled, f)
    for so in scaled:
        s = so.get("spec", {})
        check(so.get("apiVersion") == "keda.sh/v1alpha1" and so.get("kind") == "ScaledObject",
              f"keda: {so.get('kind')} {so.get('apiVersion')} is a keda.sh/v1alpha1 ScaledObject")
        check(s.get("scaleTargetRef", {}).get("name") == dep.get("metadata", {}).get("name")
              and s.get("scaleTargetRef", {}).get("kind", "Deployment") == "Deployment",
              "keda: scaleTargetRef is the vitalwatch Deployment")
        mx, mn = s.get("maxReplicaCount"), s.get("minReplicaCount", 0)
        check(isinstance(mx, int) and isinstance(mn, int) and 1 <= mn <= mx <= partitions,
              f"keda: minReplicaCount {mn} <= maxReplicaCount {mx} <= {partitions} partitions of patient-data")
        triggers = [t for t in s.get("triggers", []) if t.get("type") == "kafka"]
        if check(len(triggers) == 1, "keda: one kafka trigger"):
            md = triggers[0].get("metadata", {})
            check(md.get("consumerGroup") == kafka.get("group_id")
                  and md.get("topic") == kafka.get("input_topic")
                  and md.get("bootstrapServers") == kafka.get("bootstrap_servers"),
                  "keda: trigger's consumerGroup, topic and bootstrapServers are the ConfigMap's")
            check(str(md.get("lagThreshold", "")).isdigit(), "keda: lagThreshold is a whole number")
            check(md.get("allowIdleConsumers", "false") == "false",
                  "keda: allowIdleConsumers false (never more replicas than partitions)")

    print(f"manifests: {failures} problem(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
