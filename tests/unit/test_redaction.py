"""One redaction function for every recorded value: real-world secret shapes, by key and inside
URIs (userinfo, query strings), and what must stay readable."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from pipeline.redaction import REDACTED, redact
from pipeline.tracking.params import loggable_params

R = REDACTED
SIG = "Zm9vYmFyYmF6cXV4JTJCJTJGJTNE"
SAS = ("sv=2022-11-02&ss=b&srt=co&sp=rl&se=2026-12-31T00:00:00Z&st=2026-01-01T00:00:00Z"
       f"&spr=https&sig={SIG}")

# (key, value, what may be stored): every secret below is gone from the stored value
KEYS = [
    ("spark.hadoop.fs.azure.sas.raw.myaccount.blob.core.windows.net", SAS, R),
    ("spark.hadoop.fs.azure.sas.fixed.token.myaccount.dfs.core.windows.net", SAS, R),
    ("spark.hadoop.fs.azure.account.oauth2.client.id.myaccount.dfs.core.windows.net",
     "6f1c7f4e-0000-4000-8000-000000000000", R),
    ("spark.hadoop.fs.azure.account.oauth2.client.secret", "Qx8Q~abc.def_ghi", R),
    ("spark.hadoop.fs.azure.account.key.myaccount.dfs.core.windows.net", "bXlrZXk=", R),
    ("spark.hadoop.fs.s3a.session.token", "IQoJb3JpZ2luX2VjEJr//////////wEaCXVzLWVhc3QtMSJH", R),
    ("spark.hadoop.fs.s3a.secret.key", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", R),
    ("spark.hadoop.fs.s3a.access.key", "AKIAIOSFODNN7EXAMPLE", R),
    ("spark.hadoop.fs.gs.auth.service.account.private.key", "-----BEGIN PRIVATE KEY-----", R),
    ("spark.ssl.keyStorePassword", "changeit", R),
    ("spark.authenticate.secret", "s3cr3t", R),
    ("mlflow.db_pwd", "pw", R),
    ("env.GITHUB_TOKEN", "ghp_16C7e42F292c6912E7710c838347Ae178B4a", R),
    ("aws.credentials", "AKIA...", R),
]
# values of keys that name no secret: URIs keep their place, lose their secrets
URIS = [
    ("https://alice:hunter2@mlflow.example.com/", f"https://alice:{R}@mlflow.example.com/"),
    ("postgresql://mlflow:p%40ss:w0rd@db:5432/mlflow", f"postgresql://mlflow:{R}@db:5432/mlflow"),
    ("https://u:p@ss@host/x", f"https://u:{R}@host/x"),  # an unencoded '@' in the password
    ("https://ghp_16C7e42F292c6912E7710c838347Ae178B4a@github.com/o/r.git",
     f"https://{R}@github.com/o/r.git"),
    (f"https://acct.blob.core.windows.net/data/reviews.csv?{SAS}",
     f"https://acct.blob.core.windows.net/data/reviews.csv?{SAS.replace(SIG, R)}"),
    ("https://bucket.s3.amazonaws.com/raw/a.jsonl?X-Amz-Algorithm=AWS4-HMAC-SHA256"
     "&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20260101%2Fus-east-1%2Fs3%2Faws4_request"
     "&X-Amz-Date=20260101T000000Z&X-Amz-Expires=3600&X-Amz-SignedHeaders=host"
     "&X-Amz-Security-Token=IQoJb3JpZ2luX2Vj&X-Amz-Signature=abcdef0123456789",
     "https://bucket.s3.amazonaws.com/raw/a.jsonl?X-Amz-Algorithm=AWS4-HMAC-SHA256"
     f"&X-Amz-Credential={R}&X-Amz-Date=20260101T000000Z&X-Amz-Expires=3600"
     f"&X-Amz-SignedHeaders=host&X-Amz-Security-Token={R}&X-Amz-Signature={R}"),
    ("https://s3.amazonaws.com/b/k?AWSAccessKeyId=AKIAEXAMPLE&Expires=1&Signature=abc%3D",
     f"https://s3.amazonaws.com/b/k?AWSAccessKeyId={R}&Expires=1&Signature={R}"),
    ("https://storage.googleapis.com/b/o?X-Goog-Credential=sa%40p.iam&X-Goog-Signature=beef",
     f"https://storage.googleapis.com/b/o?X-Goog-Credential={R}&X-Goog-Signature={R}"),
    ("https://api.example.com/data?access_token=ya29.a0Af&page=2",
     f"https://api.example.com/data?access_token={R}&page=2"),
    ("https://h/x?token=abc#frag", f"https://h/x?token={R}#frag"),
    ("https://h/x?user=bob&password=hunter2", f"https://h/x?user=bob&password={R}"),
    ("https://maps.example.com/api?key=AIzaSyDUMMYKEY&q=1", f"https://maps.example.com/api?key={R}&q=1"),
    (SAS, SAS.replace(SIG, R)),  # a SAS token without its '?'
    ("read s3://b/in and https://a:b@c/d?sig=x", f"read s3://b/in and https://a:{R}@c/d?sig={R}"),
]
# nothing secret: stored exactly as given
KEPT = [
    "s3a://bucket/datasets/reviews/v0003", "hdfs://namenode:8020/data/digits",
    "abfss://container@account.dfs.core.windows.net/raw", "wasbs://c@a.blob.core.windows.net/x",
    "file:///tmp/it's data", "/home/me/data?x=1", "https://mlflow.example.com:5000/#/experiments",
    "https://h/x?sig=&page=2", "bob@example.com", "models:/digits-image_cnn@champion",
    "http://127.0.0.1:5000", "train.learning_rate=0.01",
]


@pytest.mark.parametrize(("key", "value", "stored"), KEYS, ids=[k for k, _, _ in KEYS])
def test_keys_that_hold_tokens_by_convention_are_redacted_whole(key, value, stored):
    assert redact(value, key) == stored
    assert loggable_params({key: value})[key] == stored


@pytest.mark.parametrize(("value", "stored"), URIS)
def test_secrets_inside_uris_are_redacted_and_the_rest_kept(value, stored):
    assert redact(value) == stored
    assert redact(value, "mlflow.tracking_uri") == stored
    assert redact(stored) == stored  # idempotent: a stored value redacts to itself


@pytest.mark.parametrize("value", KEPT)
def test_values_without_secrets_are_kept(value):
    assert redact(value) == value
    assert redact(value, "ingest.source") == value


def test_our_own_token_settings_are_not_secrets():
    flat = loggable_params({"text": {"url_token": "xxurl", "token_pattern": r"[\w']+"}})
    assert flat == {"text.url_token": "xxurl", "text.token_pattern": r"[\w']+"}


class _Client:
    """What the tracking helpers call, recorded: the values MLflow would store."""

    def __init__(self) -> None:
        self.stored: list[object] = []

    def create_run(self, experiment_id, run_name, tags):
        self.stored.append(tags)
        return SimpleNamespace(info=SimpleNamespace(run_id="r1"))

    def set_tag(self, run_id, key, value):
        self.stored.append({key: value})

    def set_model_version_tag(self, name, version, key, value):
        self.stored.append({key: value})


def test_run_tags_lineage_and_registry_tags_are_redacted():
    from pipeline.tracking import keys, registry, runs

    client = _Client()
    tracker = SimpleNamespace(client=client, experiment_id="1")
    secret_uri = "https://alice:hunter2@data.example.com/v1?sig=SIGSECRET"
    manifest = SimpleNamespace(fingerprint="f" * 64)
    runs.create_run(tracker, "train", "r", runs.lineage_tags(manifest, secret_uri))
    runs.create_run(tracker, "retrain", "r", {keys.RETRAIN_OUTPUT: secret_uri})
    runs.set_tags(tracker, "r1", {keys.DATASET_URL: secret_uri})
    registry.tag(tracker, registry.ModelRef("m", "1"), {keys.DATASET_URL: secret_uri})
    stored = json.dumps(client.stored)
    assert "hunter2" not in stored and "SIGSECRET" not in stored
    assert stored.count(f"https://alice:{R}@data.example.com/v1?sig={R}") == 4


def test_a_manifests_source_is_stored_redacted():
    from pipeline.datasets.manifest import Manifest

    source = "https://bob:hunter2@files.example.com/raw/reviews.csv?X-Amz-Signature=abc"
    manifest = Manifest(kind="text", source=source, created_at="now", config={}, label_map={},
                        discovered=0, splits={}, quarantine={}, schema=[], fingerprint="f")
    stored = f"https://bob:{R}@files.example.com/raw/reviews.csv?X-Amz-Signature={R}"
    assert manifest.source == stored
    assert Manifest.from_json(manifest.to_json()).source == stored
    assert "hunter2" not in manifest.to_json()
