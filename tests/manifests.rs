//! The deployment manifests (deploy/cloudrun, deploy/gke) agree with what the binaries and
//! the shipped production policy say: the ports, the probe paths, every variable set (each
//! one a binary or the policy reads, per docs/ENVIRONMENT.md, which `env-docs` generates),
//! every variable the production policy requires, the secrets and who may read them
//! (docs/DEPLOYMENT.md), the fallback share of the rate limits against the autoscaler's
//! maximum, and the grace period against `graceful_shutdown_timeout`. Their shape against
//! the Kubernetes schemas is checked by scripts/validate-manifests.sh (`make test-manifests`).

use std::collections::BTreeSet;
use std::path::Path;

use serde_yaml::Value;

fn read(relative: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn documents(relative: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(&read(relative))
        .map(|d| serde::Deserialize::deserialize(d).unwrap_or_else(|e| panic!("{relative}: {e}")))
        .filter(|d: &Value| !d.is_null())
        .collect()
}

fn find<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"].as_str() == Some(kind) && d["metadata"]["name"].as_str() == Some(name))
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

fn str_of(v: &Value) -> &str {
    v.as_str().unwrap_or_else(|| panic!("not a string: {v:?}"))
}

fn seq(v: &Value) -> &[Value] {
    v.as_sequence()
        .map(Vec::as_slice)
        .unwrap_or_else(|| panic!("not a list: {v:?}"))
}

/// The container called `name` of a pod spec.
fn container<'a>(pod: &'a Value, name: &str) -> &'a Value {
    seq(&pod["containers"])
        .iter()
        .find(|c| c["name"].as_str() == Some(name))
        .unwrap_or_else(|| panic!("no container {name}"))
}

/// `NAME=value` of a container's `env`, in order.
fn env(container: &Value) -> Vec<(String, String)> {
    seq(&container["env"])
        .iter()
        .map(|e| {
            (
                str_of(&e["name"]).to_owned(),
                e["value"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

fn env_value(container: &Value, name: &str) -> String {
    env(container)
        .into_iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v)
        .unwrap_or_else(|| panic!("{name} is not set"))
}

/// The port of a `host:port` address or a URL.
fn port_of(address: &str) -> u64 {
    let authority = address.rsplit("//").next().unwrap_or(address);
    let authority = authority.split('/').next().unwrap_or(authority);
    authority
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no port in {address}"))
}

/// The production policy's `key: "${VAR:-default}"` default.
fn policy_default(policy: &Value, key: &str) -> String {
    let value = str_of(&policy[key]);
    value
        .split_once(":-")
        .map(|(_, d)| d.trim_end_matches('}').to_owned())
        .unwrap_or_else(|| panic!("{key} has no default: {value}"))
}

fn production_policy() -> Value {
    serde_yaml::from_str(&read("policies/production.yaml")).expect("production policy")
}

/// Every `${NAME}` the production policy reads with no default: what a deployment must set.
fn required_by_policy() -> BTreeSet<String> {
    let text = read("policies/production.yaml");
    let mut names = BTreeSet::new();
    for (i, _) in text.match_indices("${") {
        let rest = &text[i + 2..];
        let end = rest.find('}').expect("closing brace");
        let reference = &rest[..end];
        if !reference.contains(":-") {
            names.insert(reference.to_owned());
        }
    }
    // `origins_from_env` names variables without `${}`.
    for name in seq(&production_policy()["cors"]["origins_from_env"]) {
        names.insert(str_of(name).to_owned());
    }
    names
}

/// Every variable docs/ENVIRONMENT.md documents (the names in backticks).
fn documented_variables() -> BTreeSet<String> {
    let text = read("docs/ENVIRONMENT.md");
    text.split('`')
        .skip(1)
        .step_by(2)
        .filter(|s| {
            s.len() > 2
                && s.chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
        })
        .map(str::to_owned)
        .collect()
}

/// The gateway's admin port and serving port, from the production policy's defaults.
fn policy_ports() -> (u64, u64) {
    let policy = production_policy();
    (
        port_of(&policy_default(&policy, "listen")),
        port_of(&policy_default(&policy, "admin_listen")),
    )
}

fn graceful_shutdown_seconds() -> u64 {
    let policy = production_policy();
    let value = str_of(&policy["server"]["graceful_shutdown_timeout"]);
    value
        .strip_suffix('s')
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("graceful_shutdown_timeout {value}: seconds expected"))
}

/// The admin app's paths a probe may use.
const ADMIN_PROBE_PATHS: [&str; 2] = ["/healthz", "/readyz"];

/// Every `httpGet` probe of a container: (path, port as written).
fn probes(container: &Value) -> Vec<(String, Value)> {
    ["startupProbe", "readinessProbe", "livenessProbe"]
        .iter()
        .filter(|p| !container[**p].is_null())
        .map(|p| {
            let get = &container[*p]["httpGet"];
            (str_of(&get["path"]).to_owned(), get["port"].clone())
        })
        .collect()
}

/// A probe's port by number, or by the name of one of the container's ports.
fn probe_port(container: &Value, port: &Value) -> u64 {
    if let Some(n) = port.as_u64() {
        return n;
    }
    let name = str_of(port);
    seq(&container["ports"])
        .iter()
        .find(|p| p["name"].as_str() == Some(name))
        .and_then(|p| p["containerPort"].as_u64())
        .unwrap_or_else(|| panic!("no container port named {name}"))
}

fn container_port(container: &Value, name: &str) -> u64 {
    probe_port(container, &Value::String(name.to_owned()))
}

const IMAGE: &str = "REGION-docker.pkg.dev/PROJECT/gardien/gardien:VERSION";
const BACKEND_COMMAND: &str = "/usr/local/bin/gardien-backend";

fn knative_pod(file: &str) -> (Value, Value) {
    let docs = documents(file);
    let service = docs[0].clone();
    assert_eq!(service["kind"].as_str(), Some("Service"), "{file}");
    let pod = service["spec"]["template"]["spec"].clone();
    (service, pod)
}

#[test]
fn the_gateway_manifests_listen_where_the_policy_does_and_probe_the_admin_listener() {
    let (serving, admin) = policy_ports();
    let (_, pod) = knative_pod("deploy/cloudrun/gateway.yaml");
    let gateway = container(&pod, "gateway");
    assert_eq!(gateway["image"].as_str(), Some(IMAGE));
    let ports = seq(&gateway["ports"]);
    assert_eq!(ports.len(), 1, "Cloud Run serves one port");
    assert_eq!(ports[0]["containerPort"].as_u64(), Some(serving));
    // Cloud Run sends only HTTP/2 to a port named h2c: the policy must accept it.
    match ports[0]["name"].as_str() {
        Some("h2c") => assert_eq!(
            production_policy()["server"]["h2c"].as_bool(),
            Some(true),
            "an h2c port needs `server.h2c: true` in policies/production.yaml"
        ),
        Some("http1") => {}
        other => panic!("Cloud Run port name {other:?}: h2c or http1"),
    }
    for (path, port) in probes(gateway) {
        assert!(ADMIN_PROBE_PATHS.contains(&path.as_str()), "{path}");
        assert_eq!(probe_port(gateway, &port), admin, "Cloud Run probe {path}");
    }

    let docs = documents("deploy/gke/gateway.yaml");
    let deployment = find(&docs, "Deployment", "gardien");
    let pod = &deployment["spec"]["template"]["spec"];
    let gateway = container(pod, "gateway");
    assert_eq!(gateway["image"].as_str(), Some(IMAGE));
    assert_eq!(container_port(gateway, "http"), serving);
    assert_eq!(container_port(gateway, "admin"), admin);
    assert!(
        probes(gateway).len() >= 2,
        "GKE: startup, readiness, liveness"
    );
    for (path, port) in probes(gateway) {
        assert!(ADMIN_PROBE_PATHS.contains(&path.as_str()), "{path}");
        assert_eq!(probe_port(gateway, &port), admin, "GKE probe {path}");
    }
    let health = &find(&docs, "BackendConfig", "gardien")["spec"]["healthCheck"];
    assert_eq!(health["port"].as_u64(), Some(admin));
    assert!(ADMIN_PROBE_PATHS.contains(&str_of(&health["requestPath"])));
    let service = find(&docs, "Service", "gardien");
    assert_eq!(
        service["spec"]["ports"][0]["targetPort"].as_str(),
        Some("http")
    );
}

#[test]
fn the_backend_manifests_listen_where_backend_listen_says() {
    let (_, pod) = knative_pod("deploy/cloudrun/backend.yaml");
    let backend = container(&pod, "backend");
    let docs = documents("deploy/gke/backend.yaml");
    let gke_pod = find(&docs, "Deployment", "gardien-backend")["spec"]["template"]["spec"].clone();
    let gke_backend = container(&gke_pod, "backend");
    for (platform, backend) in [("Cloud Run", backend), ("GKE", gke_backend)] {
        assert_eq!(backend["image"].as_str(), Some(IMAGE), "{platform}");
        assert_eq!(
            backend["command"][0].as_str(),
            Some(BACKEND_COMMAND),
            "{platform}"
        );
        let listen = port_of(&env_value(backend, "BACKEND_LISTEN"));
        assert_eq!(
            seq(&backend["ports"])[0]["containerPort"].as_u64(),
            Some(listen),
            "{platform}: containerPort = BACKEND_LISTEN's port"
        );
        assert_eq!(env_value(backend, "GARDIEN_ENVIRONMENT"), "production");
        for (path, port) in probes(backend) {
            assert!(
                ADMIN_PROBE_PATHS.contains(&path.as_str()),
                "{platform} {path}"
            );
            assert_eq!(
                probe_port(backend, &port),
                listen,
                "{platform} probe {path}"
            );
        }
    }
    // gardien's BACKEND_UPSTREAM_URL on GKE names the backend Service's port.
    let service = find(&docs, "Service", "gardien-backend");
    let gateway_docs = documents("deploy/gke/gateway.yaml");
    let gateway = container(
        &find(&gateway_docs, "Deployment", "gardien")["spec"]["template"]["spec"],
        "gateway",
    )
    .clone();
    assert_eq!(
        port_of(&env_value(&gateway, "BACKEND_UPSTREAM_URL")),
        service["spec"]["ports"][0]["port"].as_u64().expect("port")
    );
}

/// (file, container) of every container of ours, with the variables it sets.
fn our_containers() -> Vec<(String, Value)> {
    let mut found = Vec::new();
    for file in [
        "deploy/cloudrun/gateway.yaml",
        "deploy/cloudrun/backend.yaml",
    ] {
        let (_, pod) = knative_pod(file);
        for c in seq(&pod["containers"]) {
            if c["image"].as_str() == Some(IMAGE) {
                found.push((file.to_owned(), c.clone()));
            }
        }
    }
    let job = &documents("deploy/cloudrun/migrate-job.yaml")[0];
    found.push((
        "deploy/cloudrun/migrate-job.yaml".to_owned(),
        container(
            &job["spec"]["template"]["spec"]["template"]["spec"],
            "migrate",
        )
        .clone(),
    ));
    for (file, kind, name, inner) in [
        (
            "deploy/gke/gateway.yaml",
            "Deployment",
            "gardien",
            "gateway",
        ),
        (
            "deploy/gke/backend.yaml",
            "Deployment",
            "gardien-backend",
            "backend",
        ),
        (
            "deploy/gke/migrate-job.yaml",
            "Job",
            "gardien-migrate",
            "migrate",
        ),
    ] {
        let docs = documents(file);
        let pod = &find(&docs, kind, name)["spec"]["template"]["spec"];
        found.push((file.to_owned(), container(pod, inner).clone()));
    }
    found
}

#[test]
fn every_variable_a_manifest_sets_is_one_the_binaries_read() {
    let documented = documented_variables();
    assert!(
        documented.contains("GARDIEN_CLIENT_IP"),
        "ENVIRONMENT.md parsed"
    );
    for (file, c) in our_containers() {
        for (name, _) in env(&c) {
            assert!(
                documented.contains(&name),
                "{file}: {name} is set but no binary or shipped policy reads it \
                 (docs/ENVIRONMENT.md, from env-docs)"
            );
        }
    }
}

#[test]
fn the_gateway_manifests_set_every_variable_the_production_policy_requires() {
    let required = required_by_policy();
    assert!(required.contains("REDIS_URL") && required.contains("GARDIEN_CLIENT_IP"));
    let documented = documented_variables();
    for name in &required {
        assert!(
            documented.contains(name),
            "{name}: not in docs/ENVIRONMENT.md"
        );
    }
    for (file, c) in our_containers()
        .into_iter()
        .filter(|(f, _)| f.ends_with("gateway.yaml"))
    {
        let set: BTreeSet<String> = env(&c).into_iter().map(|(n, _)| n).collect();
        let missing: Vec<_> = required.difference(&set).collect();
        assert!(
            missing.is_empty(),
            "{file}: the production policy requires {missing:?}"
        );
        assert!(
            !set.contains("GARDIEN_INTERNAL_SECRET"),
            "{file}: secrets come from Secret Manager, never a plain variable"
        );
    }
}

/// Cloud Run `maxScale` and the GKE autoscaler's `maxReplicas` equal `GARDIEN_REPLICAS`:
/// while Redis is unreachable each replica allows `rate / GARDIEN_REPLICAS`, so with the
/// maximum the sum over replicas never exceeds a limit, whatever the count of the moment.
#[test]
fn the_fallback_share_counts_the_most_replicas_the_platform_may_run() {
    let (service, pod) = knative_pod("deploy/cloudrun/gateway.yaml");
    let max_scale = str_of(
        &service["spec"]["template"]["metadata"]["annotations"]["autoscaling.knative.dev/maxScale"],
    )
    .to_owned();
    assert_eq!(
        env_value(container(&pod, "gateway"), "GARDIEN_REPLICAS"),
        max_scale,
        "Cloud Run: GARDIEN_REPLICAS = maxScale"
    );
    let docs = documents("deploy/gke/gateway.yaml");
    let hpa = find(&docs, "HorizontalPodAutoscaler", "gardien");
    let gateway = container(
        &find(&docs, "Deployment", "gardien")["spec"]["template"]["spec"],
        "gateway",
    );
    assert_eq!(
        env_value(gateway, "GARDIEN_REPLICAS"),
        hpa["spec"]["maxReplicas"]
            .as_u64()
            .expect("maxReplicas")
            .to_string(),
        "GKE: GARDIEN_REPLICAS = maxReplicas"
    );
    assert_eq!(
        hpa["spec"]["scaleTargetRef"]["name"].as_str(),
        Some("gardien")
    );
    // The policy reads it.
    assert!(read("policies/production.yaml").contains("${GARDIEN_REPLICAS"));
}

#[test]
fn a_gke_pod_is_given_time_to_drain_before_it_is_killed() {
    let timeout = graceful_shutdown_seconds();
    for (file, name) in [
        ("deploy/gke/gateway.yaml", "gardien"),
        ("deploy/gke/backend.yaml", "gardien-backend"),
    ] {
        let docs = documents(file);
        let pod = &find(&docs, "Deployment", name)["spec"]["template"]["spec"];
        let grace = pod["terminationGracePeriodSeconds"]
            .as_u64()
            .expect("terminationGracePeriodSeconds");
        for c in seq(&pod["containers"]) {
            let pause = c["lifecycle"]["preStop"]["sleep"]["seconds"]
                .as_u64()
                .unwrap_or_else(|| panic!("{file}: no preStop pause"));
            assert!(
                grace > pause + timeout,
                "{file}: terminationGracePeriodSeconds {grace} must exceed the preStop \
                 pause {pause} + graceful_shutdown_timeout {timeout}"
            );
        }
    }
}

/// The selectors of the Services, autoscalers, disruption budgets, network policies and
/// PodMonitorings select the pods of the Deployments, and name their ports.
#[test]
fn gke_selectors_and_port_names_match_the_deployments() {
    let mut docs = Vec::new();
    for file in [
        "deploy/gke/gateway.yaml",
        "deploy/gke/backend.yaml",
        "deploy/gke/networkpolicy.yaml",
        "deploy/gke/podmonitoring.yaml",
    ] {
        docs.extend(documents(file));
    }
    for (name, ports) in [
        ("gardien", vec!["http", "admin"]),
        ("gardien-backend", vec!["http"]),
    ] {
        let deployment = find(&docs, "Deployment", name);
        let labels = &deployment["spec"]["template"]["metadata"]["labels"];
        assert_eq!(
            &deployment["spec"]["selector"]["matchLabels"], labels,
            "{name}: selector = pod labels"
        );
        let pod = &deployment["spec"]["template"]["spec"];
        let names: Vec<&str> = seq(&pod["containers"])
            .iter()
            .flat_map(|c| seq(&c["ports"]))
            .filter_map(|p| p["name"].as_str())
            .collect();
        assert_eq!(names, ports, "{name}: container port names");
        assert_eq!(&find(&docs, "Service", name)["spec"]["selector"], labels);
        assert_eq!(
            &find(&docs, "PodDisruptionBudget", name)["spec"]["selector"]["matchLabels"],
            labels
        );
        assert_eq!(
            &find(&docs, "NetworkPolicy", name)["spec"]["podSelector"]["matchLabels"],
            labels
        );
        let monitoring = find(&docs, "PodMonitoring", name);
        assert_eq!(&monitoring["spec"]["selector"]["matchLabels"], labels);
        for endpoint in seq(&monitoring["spec"]["endpoints"]) {
            assert!(
                names.contains(&str_of(&endpoint["port"])),
                "{name}: scrape port"
            );
        }
        assert_eq!(
            pod["serviceAccountName"].as_str(),
            Some(name),
            "{name}: its own Kubernetes service account"
        );
    }
    // Only gardien (and, for the backend, the existing API) may connect to the backend.
    let backend = find(&docs, "NetworkPolicy", "gardien-backend");
    let from: Vec<&Value> = seq(&backend["spec"]["ingress"][0]["from"]).iter().collect();
    assert_eq!(
        from[0]["podSelector"]["matchLabels"]["app.kubernetes.io/name"].as_str(),
        Some("gardien")
    );
}

/// The service account each container runs as, and the secrets it reads through the
/// chain (Secret Manager in production).
const READERS: [(&str, &[&str]); 3] = [
    (
        "gardien-gateway",
        &["GARDIEN_INTERNAL_SECRET", "SENTRY_DSN"],
    ),
    // The existing API: it verifies X-Gardien-Identity and signs its `internal` calls.
    ("$API_SA", &["GARDIEN_INTERNAL_SECRET"]),
    (
        "gardien-backend",
        &[
            "GARDIEN_INTERNAL_SECRET",
            "DATABASE_URL",
            "SENDGRID_API_KEY",
            "TWILIO_ACCOUNT_SID",
            "TWILIO_AUTH_TOKEN",
            "SENTRY_DSN",
        ],
    ),
];

/// docs/DEPLOYMENT.md creates every secret the services read and grants each service
/// account `roles/secretmanager.secretAccessor` on exactly the secrets it reads.
#[test]
fn the_guide_creates_every_secret_and_grants_each_reader() {
    let guide = read("docs/DEPLOYMENT.md");
    let lines: Vec<&str> = guide.lines().collect();
    let created: BTreeSet<&str> = lines
        .iter()
        .filter_map(|l| l.split("gcloud secrets create ").nth(1))
        .filter_map(|rest| rest.split_whitespace().next())
        .collect();
    let mut grants: BTreeSet<(String, String)> = BTreeSet::new();
    // `for s in A B C; do gcloud secrets add-iam-policy-binding "$s" --member=serviceAccount:SA@… …`
    // and single `gcloud secrets add-iam-policy-binding NAME --member=serviceAccount:SA@…`.
    let text = guide.replace("\\\n", " ");
    for line in text.lines() {
        let Some(at) = line.find("gcloud secrets add-iam-policy-binding ") else {
            continue;
        };
        let member = line
            .split("--member=serviceAccount:")
            .nth(1)
            .and_then(|m| m.split(|c: char| c == '@' || c.is_whitespace()).next())
            .unwrap_or_else(|| panic!("a binding without its service account: {line}"));
        assert!(
            line.contains("--role=roles/secretmanager.secretAccessor"),
            "{line}"
        );
        let target = line[at..]
            .split_whitespace()
            .nth(3)
            .expect("secret")
            .trim_matches('"');
        let names: Vec<String> = if target == "$s" {
            line.split("for s in ")
                .nth(1)
                .and_then(|l| l.split(';').next())
                .unwrap_or_else(|| panic!("`$s` outside a `for s in …;` loop: {line}"))
                .split_whitespace()
                .map(str::to_owned)
                .collect()
        } else {
            vec![target.to_owned()]
        };
        for name in names {
            grants.insert((member.to_owned(), name));
        }
    }
    for (account, secrets) in READERS {
        for secret in secrets {
            assert!(
                created.contains(secret),
                "docs/DEPLOYMENT.md never creates {secret}"
            );
            assert!(
                grants.contains(&(account.to_owned(), (*secret).to_owned())),
                "docs/DEPLOYMENT.md never lets {account} read {secret}"
            );
        }
    }
    for (account, secret) in &grants {
        let reads = READERS
            .iter()
            .any(|(a, s)| a == account && s.contains(&secret.as_str()));
        let sidecar_config = secret.ends_with("-rungmp");
        assert!(
            reads || sidecar_config,
            "{account} is granted {secret}, which it does not read (least privilege)"
        );
    }
    // The mounted sidecar configs exist too.
    for file in [
        "deploy/cloudrun/gateway.yaml",
        "deploy/cloudrun/backend.yaml",
    ] {
        let (_, pod) = knative_pod(file);
        for volume in seq(&pod["volumes"]) {
            let name = str_of(&volume["secret"]["secretName"]);
            assert!(
                created.contains(name),
                "{file}: secret {name} is never created"
            );
        }
    }
    // Each Cloud Run service runs as the account the guide grants.
    for (file, account) in [
        ("deploy/cloudrun/gateway.yaml", "gardien-gateway"),
        ("deploy/cloudrun/backend.yaml", "gardien-backend"),
    ] {
        let (_, pod) = knative_pod(file);
        assert_eq!(
            str_of(&pod["serviceAccountName"]),
            format!("{account}@PROJECT.iam.gserviceaccount.com"),
            "{file}"
        );
    }
}

#[test]
fn only_the_gateway_is_public_on_cloud_run() {
    let (gateway, _) = knative_pod("deploy/cloudrun/gateway.yaml");
    let (backend, _) = knative_pod("deploy/cloudrun/backend.yaml");
    let ingress = |s: &Value| {
        s["metadata"]["annotations"]["run.googleapis.com/ingress"]
            .as_str()
            .map(str::to_owned)
    };
    assert_eq!(ingress(&gateway).as_deref(), Some("all"));
    assert_eq!(ingress(&backend).as_deref(), Some("internal"));
    // gardien reaches the internal services through the VPC.
    assert_eq!(
        gateway["spec"]["template"]["metadata"]["annotations"]
            ["run.googleapis.com/vpc-access-egress"]
            .as_str(),
        Some("all-traffic")
    );
    // The guide closes the existing API's public address.
    assert!(read("docs/DEPLOYMENT.md").contains("--ingress=internal"));
}
