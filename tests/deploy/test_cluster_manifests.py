"""The Kubernetes manifests and spark-submit recipes keep their contracts, read from the files (no
cluster runs here): every pod runs as Spark's user 185 with no privilege escalation, no
capabilities, the RuntimeDefault seccomp profile and a read-only image (emptyDirs where Spark and
the libraries write); the driver's Role cannot delete the retrain lock's claim; every command
names a pipeline command or job that exists, in the image where it runs; the YARN recipe's packed
venv agrees with itself, with conf/yarn.yaml and with the README.

Each contract is a function returning what is wrong; each test also breaks a copy and checks the
break is reported.
"""

from __future__ import annotations

import copy
import re
import shlex
from pathlib import Path

import pytest
import yaml

from pipeline.cli import build_parser
from tests.deploy.test_images import SPARK_HOME, SPARK_UID, in_image
from tests.dockerfile import parse

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
CRONJOB = DEPLOY / "kubernetes" / "retrain-cronjob.yaml"
SUBMIT = DEPLOY / "spark-submit"
POD_TEMPLATES = sorted(SUBMIT.glob("*pod*.yaml"))


def _docs(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def pod_specs(doc: dict) -> list[dict]:
    """The pod specs a manifest holds (a Pod, or the template of a CronJob, Job, Deployment)."""
    if doc.get("kind") == "Pod":
        return [doc["spec"]]
    if doc.get("kind") == "CronJob":
        return [doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]]
    if doc.get("kind") in ("Job", "Deployment", "StatefulSet", "DaemonSet"):
        return [doc["spec"]["template"]["spec"]]
    return []


def _all_pod_specs() -> dict[str, dict]:
    specs = {}
    for path in [*sorted((DEPLOY / "kubernetes").glob("*.yaml")), *POD_TEMPLATES]:
        for doc in _docs(path):
            for i, spec in enumerate(pod_specs(doc)):
                specs[f"{path.name}:{doc['kind']}:{i}"] = spec
    return specs


def _image_home() -> str:
    """The home of the images' user (Dockerfile.cpu's useradd --home-dir)."""
    run = parse((DEPLOY / "docker" / "Dockerfile.cpu").read_text())[-1].run_text
    return re.search(r"\buseradd\b[^\n]*--home-dir[= ](\S+)", run).group(1)


# --- pod security ----------------------------------------------------------------------------

def security_problems(pod: dict) -> list[str]:
    """What a pod spec lacks of: uid 185, non-root, no escalation, no capabilities,
    RuntimeDefault seccomp, a read-only root file system with emptyDirs where Spark writes."""
    problems = []
    pod_context = pod.get("securityContext", {})
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    writable = ("/tmp", f"{SPARK_HOME}/work-dir", _image_home())
    for container in [*pod.get("initContainers", []), *pod["containers"]]:
        name, own = container["name"], container.get("securityContext", {})

        def setting(key: str, own=own) -> object:
            return own.get(key, pod_context.get(key))

        if setting("runAsNonRoot") is not True:
            problems.append(f"{name}: runAsNonRoot is not true")
        if setting("runAsUser") != int(SPARK_UID):
            problems.append(f"{name}: runAsUser is {setting('runAsUser')}, not {SPARK_UID}")
        if (setting("seccompProfile") or {}).get("type") != "RuntimeDefault":
            problems.append(f"{name}: seccompProfile is not RuntimeDefault")
        if own.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{name}: allowPrivilegeEscalation is not false")
        if "ALL" not in own.get("capabilities", {}).get("drop", []) or \
                own.get("capabilities", {}).get("add"):
            problems.append(f"{name}: capabilities do not drop ALL (and add none)")
        if own.get("privileged"):
            problems.append(f"{name}: privileged")
        if own.get("readOnlyRootFilesystem") is not True:
            problems.append(f"{name}: readOnlyRootFilesystem is not true")
        mounts = {m["mountPath"]: m["name"] for m in container.get("volumeMounts", [])}
        problems += [f"{name}: {path} is not an emptyDir (the root file system is read-only)"
                     for path in writable if "emptyDir" not in volumes.get(mounts.get(path), {})]
    return problems


@pytest.mark.parametrize("where", sorted(_all_pod_specs()))
def test_every_pod_runs_as_sparks_user_without_privileges_on_a_read_only_image(where):
    assert security_problems(_all_pod_specs()[where]) == []


_DELETE = object()
POD = "securityContext"
CONTAINER = "containers.0.securityContext"


def _change(*edits: tuple[str, object]):
    """Edits of a pod spec: (dotted path, new value or _DELETE), missing keys ignored."""
    def change(pod: dict) -> None:
        for path, value in edits:
            *parents, last = path.split(".")
            target = pod
            for key in parents:
                target = target[int(key)] if key.isdigit() else target.get(key, {})
            if value is _DELETE:
                target.pop(last, None)
            else:
                target[last] = value
    return change


POD_BREAKS = [
    (_change((f"{POD}.runAsNonRoot", _DELETE), (f"{CONTAINER}.runAsNonRoot", _DELETE)),
     "runAsNonRoot"),
    (_change((f"{CONTAINER}.runAsNonRoot", False)), "runAsNonRoot"),
    (_change((f"{CONTAINER}.runAsUser", 0)), "runAsUser"),
    (_change((f"{POD}.seccompProfile", _DELETE), (f"{CONTAINER}.seccompProfile", _DELETE)),
     "seccompProfile"),
    (_change((f"{CONTAINER}.seccompProfile", {"type": "Unconfined"})), "seccompProfile"),
    (_change((f"{CONTAINER}.allowPrivilegeEscalation", True)), "allowPrivilegeEscalation"),
    (_change((f"{CONTAINER}.capabilities", {"drop": ["NET_RAW"]})), "capabilities"),
    (_change((f"{CONTAINER}.capabilities.add", ["SYS_ADMIN"])), "capabilities"),
    (_change((f"{CONTAINER}.privileged", True)), "privileged"),
    (_change((f"{CONTAINER}.readOnlyRootFilesystem", _DELETE)), "readOnlyRootFilesystem"),
    (_change(("containers.0.volumeMounts", [])), "/tmp is not an emptyDir"),
    (_change(("volumes", [])), "work-dir is not an emptyDir"),
]


@pytest.mark.parametrize("where", sorted(_all_pod_specs()))
@pytest.mark.parametrize(("change", "said"), POD_BREAKS, ids=[b[1] for b in POD_BREAKS])
def test_a_pod_with_a_security_setting_broken_is_reported(where, change, said):
    pod = copy.deepcopy(_all_pod_specs()[where])
    change(pod)
    assert any(said in p for p in security_problems(pod)), security_problems(pod)


# --- the driver's Role and the lock's claim --------------------------------------------------

def claim_deleters(role: dict, claim: str) -> list[dict]:
    """The rules of ``role`` that let its holder delete the PersistentVolumeClaim ``claim``
    (RBAC only adds: any one rule is enough; deletecollection ignores resourceNames)."""
    found = []
    for rule in role.get("rules", []):
        if not {"", "*"} & set(rule.get("apiGroups", [])):
            continue
        if not {"persistentvolumeclaims", "*"} & set(rule.get("resources", [])):
            continue
        verbs, names = set(rule.get("verbs", [])), rule.get("resourceNames", [])
        if {"*", "deletecollection"} & verbs or ("delete" in verbs and (not names
                                                                        or claim in names)):
            found.append(rule)
    return found


@pytest.fixture(scope="module")
def manifests() -> dict[str, dict]:
    return {d["kind"]: d for d in _docs(CRONJOB)}


def _lock_claim(manifests) -> str:
    """The claim of the volume the CronJob mounts at retrain.lock_dir."""
    config = yaml.safe_load(manifests["ConfigMap"]["data"]["kubernetes.yaml"])
    (pod,) = pod_specs(manifests["CronJob"])
    (container,) = pod["containers"]
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volume = next(v for v in pod["volumes"] if v["name"] == mounts[config["retrain"]["lock_dir"]])
    return volume["persistentVolumeClaim"]["claimName"]


def test_the_drivers_role_cannot_delete_the_lock_claim(manifests):
    claim = _lock_claim(manifests)
    assert claim == manifests["PersistentVolumeClaim"]["metadata"]["name"]
    role, binding = manifests["Role"], manifests["RoleBinding"]
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                                  "name": role["metadata"]["name"]}
    (pod,) = pod_specs(manifests["CronJob"])
    assert {"kind": "ServiceAccount", "name": pod["serviceAccountName"],
            "namespace": "pipeline"} in binding["subjects"]
    assert claim_deleters(role, claim) == []
    # what Spark still may do with claims (spark.kubernetes.executor.volumes.*)
    verbs = {v for r in role["rules"] if "persistentvolumeclaims" in r["resources"]
             for v in r["verbs"]}
    assert {"create", "get", "list", "watch"} <= verbs


@pytest.mark.parametrize(("rule", "deletes"), [
    ({"apiGroups": [""], "resources": ["persistentvolumeclaims"], "verbs": ["delete"]}, True),
    ({"apiGroups": [""], "resources": ["persistentvolumeclaims"], "verbs": ["*"]}, True),
    ({"apiGroups": ["*"], "resources": ["*"], "verbs": ["deletecollection"]}, True),
    ({"apiGroups": [""], "resources": ["persistentvolumeclaims"], "verbs": ["delete"],
      "resourceNames": ["pipeline-retrain-lock"]}, True),
    ({"apiGroups": [""], "resources": ["persistentvolumeclaims"], "verbs": ["delete"],
      "resourceNames": ["spark-exec-1-pvc-0"]}, False),
    ({"apiGroups": ["apps"], "resources": ["persistentvolumeclaims"], "verbs": ["delete"]}, False),
    ({"apiGroups": [""], "resources": ["pods"], "verbs": ["*"]}, False),
])
def test_a_role_that_could_delete_the_lock_claim_is_reported(manifests, rule, deletes):
    role = copy.deepcopy(manifests["Role"])
    role["rules"].append(rule)
    assert bool(claim_deleters(role, _lock_claim(manifests))) == deletes


# --- commands name what exists ---------------------------------------------------------------

def _pipeline_command_problem(words: list[str]) -> str | None:
    """Why ``words`` is not a valid ``pipeline`` command line (None when it is)."""
    if not words or words[0] != "pipeline":
        return f"{words[:1]} is not the pipeline command"
    try:
        build_parser().parse_args(words[1:])
    except SystemExit as exc:
        return f"`{shlex.join(words)}` is not a pipeline command line ({exc})"
    return None


def container_command_problems(container: dict) -> list[str]:
    """The CronJob's container: the image's entrypoint in pass-through mode, running a shell
    whose command is a valid ``pipeline`` command line."""
    if "command" in container:
        return [f"command {container['command']} replaces the image's entrypoint"]
    args = container.get("args", [])
    if not args or args[0] in ("driver", "executor"):
        return [f"args {args[:1]} are not passed through by Spark's entrypoint"]
    if args[:2] != ["/bin/sh", "-c"] or len(args) != 3:
        return [f"args {args[:2]} do not run one shell script"]
    first = args[2].split("&")[0].replace("\\\n", " ")
    problem = _pipeline_command_problem(shlex.split(first))
    return [problem] if problem else []


def k8s_submit_problems(script: str, image_text: str) -> list[str]:
    """deploy/spark-submit/kubernetes.sh: its job files and config are in the driver's image,
    its pod templates in this checkout (spark-submit reads them here)."""
    image = parse(image_text)[-1]
    problems = []
    found = re.search(r'"local://(/\S*/)\$JOB\.py"', script)
    jobs = sorted(p.stem for p in (REPO / "jobs").glob("*.py") if not p.name.startswith("_"))
    if not found:
        problems.append("no local:// job file in the image")
    else:
        problems += [f"{found.group(1)}{job}.py is not in the image" for job in jobs
                     if not in_image(f"{found.group(1)}{job}.py", image)]
    for config in re.findall(r"--config (\S+)", script):
        if not in_image(config, image):
            problems.append(f"--config {config} is not in the image")
    for key, path in re.findall(r"(spark\.kubernetes\.\w+\.podTemplateFile)=(\S+)", script):
        if not (REPO / path).is_file():
            problems.append(f"{key}={path} is not in this checkout")
    return problems


def test_the_cronjob_runs_a_pipeline_command_through_the_entrypoint(manifests):
    (pod,) = pod_specs(manifests["CronJob"])
    (container,) = pod["containers"]
    assert container_command_problems(container) == []


@pytest.mark.parametrize(("change", "said"), [
    (lambda c: c.update(command=["pipeline"]), "replaces the image's entrypoint"),
    (lambda c: c.update(args=["executor"]), "not passed through"),
    (lambda c: c["args"].__setitem__(2, c["args"][2].replace("retrain", "retrian", 1)),
     "not a pipeline command line"),
    (lambda c: c["args"].__setitem__(2, c["args"][2].replace("--config", "--konfig", 1)),
     "not a pipeline command line"),
    (lambda c: c["args"].__setitem__(2, c["args"][2].replace("pipeline", "pipelin", 1)),
     "not the pipeline command"),
])
def test_a_container_command_that_names_no_pipeline_command_is_reported(manifests, change, said):
    (pod,) = pod_specs(copy.deepcopy(manifests["CronJob"]))
    (container,) = pod["containers"]
    change(container)
    assert any(said in p for p in container_command_problems(container))


def test_kubernetes_submit_names_jobs_and_files_that_exist():
    script = (SUBMIT / "kubernetes.sh").read_text()
    cpu = (DEPLOY / "docker" / "Dockerfile.cpu").read_text()
    assert k8s_submit_problems(script, cpu) == []
    assert "driver.podTemplateFile" in script and "executor.podTemplateFile" in script
    for old, new, said in [
        ("local:///opt/pipeline/jobs/", "local:///opt/app/jobs/", "train.py is not in the image"),
        ("/opt/pipeline/conf/kubernetes.yaml", "/etc/k.yaml", "--config /etc/k.yaml"),
        ("driver-pod.yaml", "driver.yaml", "driver.podTemplateFile"),
    ]:
        assert old in script
        problems = k8s_submit_problems(script.replace(old, new), cpu)
        assert any(said in p for p in problems), problems
    without_jobs = cpu.replace("COPY jobs jobs\n", "")
    assert any("train.py is not in the image" in p
               for p in k8s_submit_problems(script, without_jobs))


# --- YARN: the packed venv -------------------------------------------------------------------

def yarn_problems(script: str, config: dict, readme: str) -> list[str]:
    """deploy/spark-submit/yarn.sh ships the venv-pack archive as ./ALIAS and runs the tasks
    with ./ALIAS/bin/python, the driver with the local venv; its cluster settings are
    conf/yarn.yaml's, which sets nothing Spark reads before the job starts; the README's YARN
    command uses the same archive and alias."""
    problems = []
    archives = re.findall(r"--archives (\S+)#(\w+)", script)
    if len(archives) != 1:
        return [f"not one --archives FILE#ALIAS: {archives}"]
    (archive, alias), = archives
    packed = re.search(r"venv-pack\b.* -o (\S+)", script)
    if not packed or packed.group(1) != archive:
        problems.append(f"--archives {archive} is not the file venv-pack makes")
    python = f"spark.pyspark.python=./{alias}/bin/python"
    if f"--conf {python}" not in script:
        problems.append(f"no --conf {python} (the executors' Python in the archive)")
    if not re.search(r"spark\.pyspark\.driver\.python=\S*\.venv/bin/python", script):
        problems.append("no spark.pyspark.driver.python: the client-mode driver would take "
                        f"./{alias}/bin/python too")
    if "--master yarn" not in script or config["spark"]["master"] != "yarn":
        problems.append("the script and conf/yarn.yaml do not both name YARN")
    if "--config conf/yarn.yaml" not in script:
        problems.append("the script does not pass --config conf/yarn.yaml")
    conf = config["spark"].get("conf", {})
    late = {"spark.pyspark.python", "spark.pyspark.driver.python", "spark.archives",
            "spark.yarn.dist.archives"} & set(conf)
    problems += [f"conf/yarn.yaml sets {key}, which Spark reads before the job" for key in late]
    for key, value in re.findall(r"--conf (spark\.[\w.]+)=(\S+)", script):
        if key in conf and conf[key] != value.strip("\"'"):
            problems.append(f"{key}: {value} in the script, {conf[key]} in conf/yarn.yaml")
    for line in (ln for ln in readme.splitlines() if "--master yarn" in ln):
        if f"--archives {archive}#{alias}" not in line or python not in line:
            problems.append(f"the README's YARN command differs: {line.strip()}")
    return problems


def _yarn_files() -> tuple[str, dict, str]:
    return ((SUBMIT / "yarn.sh").read_text(),
            yaml.safe_load((REPO / "conf" / "yarn.yaml").read_text()),
            (REPO / "README.md").read_text())


def test_the_yarn_recipe_ships_the_packed_venv_consistently():
    script, config, readme = _yarn_files()
    assert "--master yarn" in readme  # the README shows the YARN command this checks
    assert yarn_problems(script, config, readme) == []


@pytest.mark.parametrize(("part", "old", "new", "said"), [
    ("script", "#environment", "#env", "spark.pyspark.python=./env/bin/python"),
    ("script", "-o pipeline-venv.tar.gz", "-o venv.tar.gz", "not the file venv-pack makes"),
    ("script", "--conf spark.pyspark.python=", "--conf spark.pyspark.pythonx=", "executors'"),
    ("script", "spark.pyspark.driver.python=", "spark.pyspark.driver.pythonx=", "driver"),
    ("script", "spark.executor.memory=8g", "spark.executor.memory=4g", "spark.executor.memory"),
    ("script", "--config conf/yarn.yaml", "--config conf/standalone.yaml", "--config"),
    ("readme", "pipeline-venv.tar.gz#environment", "pipeline-venv.tar.gz#venv", "README"),
])
def test_a_broken_yarn_recipe_is_reported(part, old, new, said):
    script, config, readme = _yarn_files()
    if part == "script":
        assert old in script
        script = script.replace(old, new)
    else:
        assert old in readme
        readme = readme.replace(old, new)
    assert any(said in p for p in yarn_problems(script, config, readme))


def test_a_yarn_config_setting_the_python_too_late_is_reported():
    script, config, readme = _yarn_files()
    config["spark"]["conf"]["spark.pyspark.python"] = "./environment/bin/python"
    assert any("reads before the job" in p for p in yarn_problems(script, config, readme))
