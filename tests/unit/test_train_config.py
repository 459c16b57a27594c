"""The train section: knobs parse, and bad combinations are refused naming the key."""

import pytest

from pipeline.config import ConfigError, load_config


def test_knobs_parse_from_overrides():
    cfg = load_config(overrides=["train.optimizer=momentum", "train.momentum=0.8",
                                 "train.image_cnn.conv_filters=[16,32,64]",
                                 "train.augment.flip=horizontal", "launch.launcher=hosts",
                                 "launch.hosts=node1:2,node2:2", "train.workers=4"])
    train = cfg.train
    assert (train.optimizer, train.momentum) == ("momentum", 0.8)
    assert train.image_cnn.conv_filters == [16, 32, 64]
    assert train.augment.enabled
    assert cfg.launch.host_slots == 4


def test_keys_moved_to_launch_keep_working(caplog):
    cfg = load_config(overrides=["train.launcher=hosts", "train.hosts=node1:2",
                                 "train.stall_timeout_s=30"])
    assert (cfg.launch.launcher, cfg.launch.hosts, cfg.launch.stall_timeout_s) == (
        "hosts", "node1:2", 30)
    assert "config key 'train.launcher' is now 'launch.launcher'" in caplog.text


@pytest.mark.parametrize(("overrides", "message"), [
    (["train.momentum=0.9"], "train.momentum is only used by optimizer 'momentum', not 'adam'"),
    (["launch.launcher=hosts"], "launcher 'hosts' needs launch.hosts"),
    (["launch.hosts=node1:2"], "launch.hosts is only used by launcher 'hosts'"),
    (["launch.launcher=hosts", "launch.hosts=node1:two"], "config key 'launch.hosts'"),
    (["launch.launcher=hosts", "launch.hosts=node1:1", "train.workers=2"],
     "2 workers (train.workers) need more than the 1 slots"),
    (["train.model=text_rnn", "train.augment.rotation=10"], "train.augment"),
    (["train.epochs=2", "train.schedule.warmup_epochs=3"], "warmup_epochs (3) exceeds"),
    (["train.activation=gelu"], "config key 'train.activation'"),
    (["train.loss=hinge"], "config key 'train.loss'"),
    (["train.dropout=1.0"], "config key 'train.dropout'"),
    (["train.text_rnn.cell=rnn"], "config key 'train.text_rnn.cell'"),
    (["train.image_cnn.conv_filters=[]"], "config key 'train.image_cnn.conv_filters'"),
    (["train.augment.shift=1.5"], "config key 'train.augment.shift'"),
])
def test_bad_combinations_are_configuration_errors(overrides, message):
    with pytest.raises(ConfigError) as info:
        load_config(overrides=overrides)
    assert message in str(info.value)


@pytest.mark.parametrize("hosts", [
    "a;rm -rf /:2", "$(x):1", "`x`:1", "-oProxyCommand=x:1", "node1 :2", "node 1:2",
    "node1:2, node2:2", "node1:2\nnode2:2", "a|b:1", "a&b:1", "a>b:1", "user@node1:2",
    "node1:2,,node2:2", "node1:0", "node1:-1", "node1:²", "300.1.1.1:2", "-node1:2", "node1-:2",
    "no_de:2", "nodé:2", ":2", "node1",
])
def test_hosts_accepts_only_names_or_addresses_with_slots(hosts):
    with pytest.raises(ConfigError) as info:
        load_config(overrides=["launch.launcher=hosts", f"launch.hosts={hosts}"])
    assert "config key 'launch.hosts'" in str(info.value)


def test_hosts_take_names_fqdns_and_ipv4_addresses():
    cfg = load_config(overrides=["launch.launcher=hosts", "train.workers=2",
                                 "launch.hosts=node-1.example.com:1,10.0.0.7:1,localhost:4"])
    assert cfg.launch.host_slots == 6
