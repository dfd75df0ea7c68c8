"""Validates every manifest under deploy/cloudrun and deploy/gke against the Kubernetes
schemas, offline (PyPI's kubernetes-validate carries them), strictly: an unknown field is
an error, not a warning.

- Kinds Kubernetes defines (Deployment, Service, HorizontalPodAutoscaler, ...) are checked
  against their own schema by kubernetes-validate.
- Cloud Run's Knative Service and Job embed a Kubernetes PodSpec: their pod specs are
  checked against the PodSpec schema, after removing the few fields Knative and Cloud Run
  add beside it (listed below); metadata against ObjectMeta; the rest against the shape
  Cloud Run accepts.
- Google's custom resources (PodMonitoring, Rules, RunMonitoring, BackendConfig,
  ManagedCertificate, FrontendConfig) have no schema in that package: they are checked
  against the small schemas below, written from their reference pages, for the fields
  these manifests use.
- Anything else is an error: nothing is skipped without saying so.

Run by scripts/validate-manifests.sh, in its own virtual environment.
"""

import copy
import glob
import sys

import jsonschema
import kubernetes_validate
import yaml
from kubernetes_validate import utils
from referencing import Registry, Resource

KUBERNETES_VERSION = "1.33.0"
DEFINITIONS = "https://kubernetes.io/api/_definitions.json"
SCHEMA_DIR = "kubernetes-json-schema/v%s-local-strict" % KUBERNETES_VERSION

# Fields Knative's RevisionSpec and Cloud Run's TaskSpec add beside the PodSpec.
KNATIVE_REVISION_FIELDS = {"containerConcurrency", "timeoutSeconds"}
CLOUD_RUN_TASK_FIELDS = {"maxRetries", "timeoutSeconds"}


def definitions():
    return utils.schema_contents(SCHEMA_DIR + "/_definitions.json", KUBERNETES_VERSION)


REGISTRY = Resource.from_contents(definitions()) @ Registry()


def check(instance, schema, where):
    validator = jsonschema.validators.Draft202012Validator(schema, registry=REGISTRY)
    errors = sorted(validator.iter_errors(instance), key=lambda e: list(e.path))
    return [
        "%s%s: %s" % (where, "".join("." + str(p) for p in e.path), e.message) for e in errors
    ]


def definition(name):
    return {"$ref": "%s#/$defs/%s" % (DEFINITIONS, name)}


def strict(properties, required=()):
    return {
        "type": "object",
        "properties": properties,
        "required": list(required),
        "additionalProperties": False,
    }


STRING = {"type": "string"}
INTEGER = {"type": "integer"}
STRING_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
METADATA = definition("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta")
LABEL_SELECTOR = definition("io.k8s.apimachinery.pkg.apis.meta.v1.LabelSelector")


def resource(api_version, kind, spec, spec_required=True):
    return strict(
        {
            "apiVersion": {"const": api_version},
            "kind": {"const": kind},
            "metadata": METADATA,
            "spec": spec,
        },
        ["apiVersion", "kind", "metadata"] + (["spec"] if spec_required else []),
    )


ENDPOINT = strict(
    {
        "port": {"type": ["string", "integer"]},
        "path": STRING,
        "interval": {"type": "string", "pattern": "^[0-9]+(ms|s|m)$"},
        "timeout": {"type": "string", "pattern": "^[0-9]+(ms|s|m)$"},
    },
    ["port"],
)
RULE = strict(
    {
        "alert": STRING,
        "record": STRING,
        "expr": STRING,
        "for": STRING,
        "labels": STRING_MAP,
        "annotations": STRING_MAP,
    },
    ["expr"],
)
GROUP = strict(
    {"name": STRING, "interval": STRING, "rules": {"type": "array", "items": RULE}},
    ["name", "rules"],
)

# Google's custom resources, by (apiVersion, kind).
CUSTOM = {
    ("monitoring.googleapis.com/v1", "PodMonitoring"): resource(
        "monitoring.googleapis.com/v1",
        "PodMonitoring",
        strict(
            {
                "selector": LABEL_SELECTOR,
                "endpoints": {"type": "array", "minItems": 1, "items": ENDPOINT},
            },
            ["selector", "endpoints"],
        ),
    ),
    ("monitoring.googleapis.com/v1", "Rules"): resource(
        "monitoring.googleapis.com/v1",
        "Rules",
        strict({"groups": {"type": "array", "minItems": 1, "items": GROUP}}, ["groups"]),
    ),
    ("monitoring.googleapis.com/v1beta", "RunMonitoring"): resource(
        "monitoring.googleapis.com/v1beta",
        "RunMonitoring",
        strict(
            {"endpoints": {"type": "array", "minItems": 1, "items": ENDPOINT}},
            ["endpoints"],
        ),
    ),
    ("cloud.google.com/v1", "BackendConfig"): resource(
        "cloud.google.com/v1",
        "BackendConfig",
        strict(
            {
                "healthCheck": strict(
                    {
                        "type": {"enum": ["HTTP", "HTTPS", "HTTP2"]},
                        "requestPath": {"type": "string", "pattern": "^/"},
                        "port": INTEGER,
                        "checkIntervalSec": INTEGER,
                        "timeoutSec": INTEGER,
                        "healthyThreshold": INTEGER,
                        "unhealthyThreshold": INTEGER,
                    }
                ),
                "timeoutSec": INTEGER,
                "connectionDraining": strict({"drainingTimeoutSec": INTEGER}),
                "logging": strict({"enable": {"type": "boolean"}, "sampleRate": {"type": "number"}}),
            }
        ),
    ),
    ("networking.gke.io/v1", "ManagedCertificate"): resource(
        "networking.gke.io/v1",
        "ManagedCertificate",
        strict(
            {"domains": {"type": "array", "minItems": 1, "maxItems": 100, "items": STRING}},
            ["domains"],
        ),
    ),
    ("networking.gke.io/v1beta1", "FrontendConfig"): resource(
        "networking.gke.io/v1beta1",
        "FrontendConfig",
        strict(
            {
                "redirectToHttps": strict(
                    {"enabled": {"type": "boolean"}, "responseCodeName": STRING}
                ),
                "sslPolicy": STRING,
            }
        ),
    ),
}

KNATIVE_SERVICE = resource(
    "serving.knative.dev/v1",
    "Service",
    strict(
        {
            "template": strict({"metadata": METADATA, "spec": {"type": "object"}}, ["spec"]),
            "traffic": {"type": "array"},
        },
        ["template"],
    ),
)
CLOUD_RUN_JOB = resource(
    "run.googleapis.com/v1",
    "Job",
    strict(
        {
            "template": strict(
                {
                    "metadata": METADATA,
                    "spec": strict(
                        {
                            "taskCount": INTEGER,
                            "parallelism": INTEGER,
                            "template": strict({"spec": {"type": "object"}}, ["spec"]),
                        },
                        ["template"],
                    ),
                },
                ["spec"],
            )
        },
        ["template"],
    ),
)
POD_SPEC = definition("io.k8s.api.core.v1.PodSpec")


def pod_spec_problems(spec, extra, where):
    """The pod spec of a Cloud Run resource: a Kubernetes PodSpec plus `extra` fields."""
    spec = copy.deepcopy(spec)
    for field in extra:
        spec.pop(field, None)
    return check(spec, POD_SPEC, where)


def validate(doc, where):
    if not isinstance(doc, dict) or "apiVersion" not in doc or "kind" not in doc:
        return ["%s: not a Kubernetes resource (no apiVersion/kind)" % where]
    key = (doc["apiVersion"], doc["kind"])
    name = "%s %s/%s" % (where, doc["kind"], doc.get("metadata", {}).get("name", "?"))
    if key == ("serving.knative.dev/v1", "Service"):
        problems = check(doc, KNATIVE_SERVICE, name)
        spec = doc.get("spec", {}).get("template", {}).get("spec", {})
        problems += pod_spec_problems(spec, KNATIVE_REVISION_FIELDS, name + " spec.template.spec")
        return problems
    if key == ("run.googleapis.com/v1", "Job"):
        problems = check(doc, CLOUD_RUN_JOB, name)
        spec = (
            doc.get("spec", {}).get("template", {}).get("spec", {}).get("template", {}).get("spec", {})
        )
        problems += pod_spec_problems(
            spec, CLOUD_RUN_TASK_FIELDS, name + " spec.template.spec.template.spec"
        )
        return problems
    if key in CUSTOM:
        return check(doc, CUSTOM[key], name)
    try:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        return []
    except utils.ValidationError as e:
        path = ".".join(str(p) for p in e.path)
        return ["%s: %s: %s" % (name, path, e.message)]
    except utils.SchemaNotFoundError:
        return ["%s: no schema for %s %s: add one here" % (name, key[0], key[1])]


def main(paths):
    files = paths or sorted(glob.glob("deploy/cloudrun/*.yaml") + glob.glob("deploy/gke/*.yaml"))
    problems, count = [], 0
    for path in files:
        with open(path) as f:
            for i, doc in enumerate(yaml.safe_load_all(f)):
                if doc is None:
                    continue
                count += 1
                problems += validate(doc, "%s#%d" % (path, i))
    for problem in problems:
        print("error: " + problem, file=sys.stderr)
    if problems:
        print("%d problem(s) in %d resources" % (len(problems), count), file=sys.stderr)
        return 1
    print(
        "ok: %d resources in %d files valid (Kubernetes %s schemas, strict)"
        % (count, len(files), KUBERNETES_VERSION)
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
