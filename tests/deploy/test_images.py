"""The container images keep the contract of Spark's own Kubernetes images, read from the
Dockerfiles (no container engine runs here): SPARK_HOME=/opt/spark with bin/, jars/ and sbin/,
WORKDIR /opt/spark/work-dir, Spark's entrypoint.sh as ENTRYPOINT (``driver`` and ``executor``
start Spark under tini, any other command passes through), a non-root user 185, and the files
the Kubernetes configuration names (GPU discovery script, executor pod template) in the image.

Each contract is a function returning what is wrong; every test also breaks a copy of the file
and checks that the break is reported, so no check can pass vacuously. Paths inside the image's
venv are checked against this checkout's .venv, built by the same deploy/setup_env.sh and pins.
"""

from __future__ import annotations

import os
import posixpath
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.dockerfile import Stage, parse, stage_named

REPO = Path(__file__).resolve().parents[2]
DOCKER = REPO / "deploy" / "docker"
IMAGES = ["Dockerfile.cpu", "Dockerfile.gpu"]
VENV = REPO / ".venv"
APP = "/opt/pipeline"  # where the images keep the project and its .venv
SPARK_HOME = "/opt/spark"  # Spark's images' layout (and Spark's documentation's)
ENTRYPOINT = f"{SPARK_HOME}/kubernetes/dockerfiles/spark/entrypoint.sh"
SPARK_UID = "185"
CONFIG_FILES = ("spark.executor.resource.gpu.discoveryScript",
                "spark.kubernetes.executor.podTemplateFile")


def _pin(package: str) -> str:
    text = (REPO / "constraints.txt").read_text()
    return re.search(rf"^{re.escape(package)}==(\S+)$", text, re.M).group(1)


def _resolve(path: str, links: dict[str, str]) -> str:
    for _ in range(10):  # follow the image's links from the longest name down
        name = next((n for n in sorted(links, key=len, reverse=True)
                     if path == n or path.startswith(n + "/")), None)
        if name is None:
            return path
        path = links[name] + path[len(name):]
    raise AssertionError(f"link loop at {path}")


def in_image(path: str, image: Stage) -> bool:
    """``path`` exists in the final image: made by its COPY/RUN lines, or in its venv."""
    real = _resolve(path, image.links())
    if real in image.created(REPO):
        return True
    venv = f"{APP}/.venv/"
    return real.startswith(venv) and (VENV / real[len(venv):]).exists()


# --- the contracts ---------------------------------------------------------------------------

def layout_problems(text: str) -> list[str]:
    """SPARK_HOME, WORKDIR, ENTRYPOINT and the files Spark's entrypoint runs."""
    image = parse(text)[-1]
    env, problems = image.env, []
    if env.get("SPARK_HOME") != SPARK_HOME:
        problems.append(f"SPARK_HOME is {env.get('SPARK_HOME')!r}, not {SPARK_HOME}")
    if image.workdir != f"{SPARK_HOME}/work-dir":
        problems.append(f"WORKDIR is {image.workdir}, not {SPARK_HOME}/work-dir")
    if image.exec_form("ENTRYPOINT") != [ENTRYPOINT]:
        problems.append(f"ENTRYPOINT is {image.args('ENTRYPOINT')}, not [{ENTRYPOINT!r}]")
    for path in (ENTRYPOINT, f"{SPARK_HOME}/bin/spark-submit", f"{SPARK_HOME}/bin/spark-class",
                 f"{SPARK_HOME}/sbin", f"{SPARK_HOME}/work-dir", "/opt/decom.sh"):
        if not in_image(path, image):
            problems.append(f"{path} is not in the image")
    # the executor mode runs KubernetesExecutorBackend from $SPARK_HOME/jars with $JAVA_HOME
    jars = _resolve(f"{SPARK_HOME}/jars", image.links())
    if not (jars.startswith(f"{APP}/.venv/")
            and list((VENV / jars[len(f"{APP}/.venv/"):]).glob("spark-kubernetes_*.jar"))):
        problems.append(f"{SPARK_HOME}/jars ({jars}) has no spark-kubernetes jar")
    java = env.get("JAVA_HOME")
    if not java or not re.search(rf"\bln -s\b.*java.* {re.escape(java)}\b", image.run_text):
        problems.append("JAVA_HOME is not set to a Java the image links there")
    if not re.search(r"apt-get install\b[^\n]*\btini\b", image.run_text):
        problems.append("tini is not installed (the entrypoint runs Spark under /usr/bin/tini)")
    return problems


def user_problems(text: str) -> list[str]:
    """A non-root user 185 with a passwd entry, owning the work dir."""
    image = parse(text)[-1]
    problems = []
    if image.user != SPARK_UID:
        problems.append(f"USER is {image.user!r}, not the numeric uid {SPARK_UID} (Kubernetes "
                        "checks runAsNonRoot against a number)")
    if not re.search(rf"\buseradd\b[^\n]*--uid[= ]{SPARK_UID}\b", image.run_text):
        problems.append(f"no user with uid {SPARK_UID} is created (no passwd entry)")
    if not re.search(rf"\bchown (spark|{SPARK_UID})\S* {SPARK_HOME}/work-dir\b", image.run_text):
        problems.append(f"{SPARK_HOME}/work-dir is not the user's")
    return problems


def release_problems(text: str) -> list[str]:
    """Files copied from another stage are extracted from the verified Spark release of the
    pinned pyspark's version."""
    stages = parse(text)
    problems = []
    for source, sources, dest in stages[-1].copies():
        if source is None:
            continue
        stage = stage_named(stages, source)
        if stage is None:
            problems.append(f"COPY --from={source}: no such stage")
            continue
        version = next((a.split("=", 1)[1] for a in stage.args("ARG")
                        if a.startswith("SPARK_VERSION=")), None)
        if version != _pin("pyspark"):
            problems.append(f"stage {source} takes Spark {version}, pyspark is {_pin('pyspark')}")
        if "sha512sum" not in stage.run_text or "gpg --batch -q --verify" not in stage.run_text:
            problems.append(f"stage {source} does not verify the release (SHA-512, signature)")
        for item in sources:
            relative = item.strip("/").split("/", 1)[-1]
            if f"spark-$SPARK_VERSION/{relative}" not in stage.run_text:
                problems.append(f"{item} (for {dest}) is not extracted from the Spark release")
    return list(dict.fromkeys(problems))


def passthrough_problems(text: str) -> list[str]:
    """The default command passes through the entrypoint and is the project's, on PATH."""
    image = parse(text)[-1]
    command = image.exec_form("CMD")
    problems = []
    if not command or command[0] in ("driver", "executor"):
        problems.append(f"CMD {command} is not a pass-through command")
        return problems
    path = image.env.get("PATH", "")
    if not path.startswith(f"{APP}/.venv/bin:"):
        problems.append(f"PATH does not start with {APP}/.venv/bin: {path!r}")
    if not in_image(f"{APP}/.venv/bin/{command[0]}", image):
        problems.append(f"{command[0]} is not in {APP}/.venv/bin")
    builds = [i for i in image.instructions if i.keyword == "RUN"
              and ("deploy/setup_env.sh" in i.args or "-m venv .venv" in i.args)]
    if not builds or any(i.workdir != APP for i in builds):
        problems.append(f"the venv is not built in {APP}")
    return problems


def config_file_problems(text: str, config: dict) -> list[str]:
    """The files a Kubernetes configuration names are in the image."""
    image = parse(text)[-1]
    conf = config["spark"]["conf"]
    return [f"{key}: {conf[key]} is not in the image" for key in CONFIG_FILES
            if not in_image(conf[key], image)]


def _configs() -> dict[str, dict]:
    docs = yaml.safe_load_all((REPO / "deploy" / "kubernetes" / "retrain-cronjob.yaml").read_text())
    configmap = next(d for d in docs if d and d["kind"] == "ConfigMap")
    return {"conf/kubernetes.yaml": yaml.safe_load((REPO / "conf" / "kubernetes.yaml").read_text()),
            "the CronJob's ConfigMap": yaml.safe_load(configmap["data"]["kubernetes.yaml"])}


# --- the images keep them --------------------------------------------------------------------

def _text(name: str) -> str:
    return (DOCKER / name).read_text()


@pytest.mark.parametrize("name", IMAGES)
def test_the_images_use_sparks_entrypoint_and_spark_home_layout(name):
    assert layout_problems(_text(name)) == []
    assert release_problems(_text(name)) == []


@pytest.mark.parametrize("name", IMAGES)
def test_the_images_run_as_the_non_root_user_185(name):
    assert user_problems(_text(name)) == []


@pytest.mark.parametrize("name", IMAGES)
def test_a_plain_command_passes_through_the_entrypoint(name):
    assert passthrough_problems(_text(name)) == []


@pytest.mark.parametrize("name", IMAGES)
@pytest.mark.parametrize("where", ["conf/kubernetes.yaml", "the CronJob's ConfigMap"])
def test_the_files_the_kubernetes_configuration_names_are_in_the_images(name, where):
    config = _configs()[where]
    assert config["spark"]["conf"]["spark.executor.resource.gpu.discoveryScript"] == \
        f"{SPARK_HOME}/examples/src/main/scripts/getGpusResources.sh"  # Spark's images' path
    assert config_file_problems(_text(name), config) == []


def _kubernetes_config_files(text: str) -> list[str]:
    return config_file_problems(text, _configs()["conf/kubernetes.yaml"])


# (contract, what is changed in a copy (a regular expression), into what, what must be said)
BREAKS = [
    (layout_problems, r"ENTRYPOINT \[.*\]", 'ENTRYPOINT ["pipeline"]', "ENTRYPOINT"),
    (layout_problems, r"SPARK_HOME=/opt/spark ", "SPARK_HOME=/opt/pipeline/spark ", "SPARK_HOME"),
    (layout_problems, r"(?m)^USER ", "WORKDIR /opt/pipeline\nUSER ", "WORKDIR"),
    (layout_problems, r" /opt/spark/kubernetes/dockerfiles/spark/\n", " /opt/spark/\n",
     "entrypoint.sh is not in the image"),
    (layout_problems, r"python3\.11/site-packages/pyspark/bin ",
     "python3.10/site-packages/pyspark/bin ", "spark-submit is not in the image"),
    (layout_problems, r"pyspark/jars /opt/spark/jars", "pyspark/data /opt/spark/jars",
     "spark-kubernetes jar"),
    (layout_problems, r"JAVA_HOME=/opt/java", "JAVA_HOME=/usr/lib/jvm/none", "JAVA_HOME"),
    (layout_problems, r" tini\b(?!:)", "", "tini"),
    (user_problems, r"(?m)^USER 185$", "USER spark", "numeric uid"),
    (user_problems, r"(?m)^USER 185\n", "", "'root'"),
    (user_problems, r"--uid=185", "--uid=1000", "no user with uid 185"),
    (user_problems, r"chown spark:spark", "chmod 0777", "work-dir"),
    (release_problems, r"ARG SPARK_VERSION=\S+", "ARG SPARK_VERSION=3.5.1", "pyspark is"),
    (release_problems, r"gpg --batch -q --verify", "true", "verify"),
    (release_problems, r" *\"spark-\$SPARK_VERSION/examples/src/main/scripts/[^\"]+\" \\\n", "",
     "not extracted"),
    (release_problems, r"--from=spark-scripts", "--from=spark", "no such stage"),
    (passthrough_problems, r"CMD \[.*\]", 'CMD ["executor"]', "pass-through"),
    (passthrough_problems, r"CMD \[\"pipeline\"", 'CMD ["pipline"', "not in"),
    (passthrough_problems, r"PATH=/opt/pipeline/\.venv/bin:\$PATH",
     "PATH=$PATH:/opt/pipeline/.venv/bin", "PATH"),
    (_kubernetes_config_files, r"COPY --from=\S+ \S+/getGpusResources\.sh \S+\n", "",
     "discoveryScript"),
    (_kubernetes_config_files, r"COPY deploy deploy\n", "", "podTemplateFile"),
]


@pytest.mark.parametrize("name", IMAGES)
@pytest.mark.parametrize(("check", "pattern", "replacement", "said"), BREAKS,
                         ids=[f"{b[0].__name__}-{i}" for i, b in enumerate(BREAKS)])
def test_a_broken_copy_of_an_image_is_reported(name, check, pattern, replacement, said):
    broken, count = re.subn(pattern, replacement, _text(name))
    assert count >= 1, f"{pattern!r} is not in {name}: the break tests nothing"
    problems = check(broken)
    assert any(said in p for p in problems), problems


def test_a_configuration_naming_a_file_the_image_lacks_is_reported():
    config = _configs()["conf/kubernetes.yaml"]
    conf = config["spark"]["conf"]
    conf["spark.executor.resource.gpu.discoveryScript"] = "/opt/spark/getGpusResources.sh"
    conf["spark.kubernetes.executor.podTemplateFile"] = "deploy/spark-submit/gpu-executor-pod.yaml"
    problems = config_file_problems(_text("Dockerfile.gpu"), config)
    assert [p.split(":")[0] for p in problems] == list(CONFIG_FILES)


# --- and the linked SPARK_HOME runs Spark's own scripts --------------------------------------

def _spark_home_here(root: Path, text: str) -> Path:
    """The image's links under /opt/spark, made under ``root`` with this checkout's .venv in
    place of the image's."""
    home = root / SPARK_HOME.lstrip("/")
    home.mkdir(parents=True)
    for name, target in parse(text)[-1].links().items():
        if name.startswith(SPARK_HOME + "/") and target.startswith(f"{APP}/.venv/"):
            (root / name.lstrip("/")).symlink_to(VENV / target[len(f"{APP}/.venv/"):])
    return home


def _spark_submit_version(home: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SPARK_", "PYSPARK_"))}
    return subprocess.run([str(home / "bin" / "spark-submit"), "--version"],
                          env={**env, "SPARK_HOME": str(home)}, capture_output=True, text=True,
                          timeout=120)


def test_sparks_own_scripts_run_from_the_linked_spark_home(tmp_path):
    """What the entrypoint's ``driver`` mode runs: $SPARK_HOME/bin/spark-submit, which finds
    the pinned Spark's jars through $SPARK_HOME."""
    out = _spark_submit_version(_spark_home_here(tmp_path / "image", _text("Dockerfile.cpu")))
    assert out.returncode == 0, out.stderr[-2000:]
    assert re.search(rf"version {re.escape(_pin('pyspark'))}\b", out.stdout + out.stderr)
    no_jars = _text("Dockerfile.cpu").replace(" /opt/spark/jars", " /opt/spark/jars-elsewhere")
    out = _spark_submit_version(_spark_home_here(tmp_path / "broken", no_jars))
    assert out.returncode != 0 and "Failed to find Spark jars directory" in out.stderr


def test_the_venv_path_in_the_links_is_this_pythons():
    """The links name lib/pythonX.Y of the pinned Python: the version the venv is built with."""
    major_minor = re.search(r">=(3\.\d+)", (REPO / "pyproject.toml").read_text()).group(1)
    for name in IMAGES:
        targets = [posixpath.relpath(t, f"{APP}/.venv") for t in
                   parse(_text(name))[-1].links().values() if t.startswith(f"{APP}/.venv/")]
        assert targets and all(t.startswith(f"lib/python{major_minor}/") for t in targets)
