"""The sam_lml attention supervisor: installed kinds, contract, reference wiring of Eq. 3-8 and 26-29,
and behaviour (what it trains and what it leaves alone)."""
from types import SimpleNamespace

import pytest
import torch
from torch import nn

import mmcore
from mmcore.testing import check_id, contract_checks, make_trainer, run_steps, toy_config
from mmcore_sam_lml import losses as L
from mmcore_sam_lml.config import SamLmlConfig
from mmcore_sam_lml.discovery import RecordShape
from mmcore_sam_lml.supervisor import SamLmlSupervisor

T, F = True, False
SWITCHES = ("noise", "augmented_noise", "decomposition", "mi", "variance", "context", "mixing")


@pytest.fixture(autouse=True)
def one_thread():
    # toy models are tiny: on a shared 2-core machine extra intra-op threads only contend
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def sequence_config(supervisor=None, fusion=None, **tables):
    return toy_config(sequence=4, fusion=fusion or {"kind": "sam_lml", "d_model": 16},
                      attention_supervisors=[] if supervisor is None else [supervisor], **tables)


def dot(queries, keys):
    return queries @ keys.transpose(-1, -2)


def hand_record(kind="inter", key_steps=2, query_mask=(T, T), key_mask=(T, F)):
    queries = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
    keys = torch.tensor([[[2.0, 0.0], [0.0, -1.0], [1.0, 1.0]]])[:, :key_steps]
    name = "intra/a" if kind == "intra" else "inter/a->b"
    return mmcore.AttentionRecord(name=name, kind=kind, query_modality="a", key_modality="a" if kind == "intra" else "b",
                                  queries=queries, keys=keys, scores=dot(queries, keys), score_fn=dot,
                                  query_mask=torch.tensor([query_mask]), key_mask=torch.tensor([key_mask[:key_steps]]))


def supervisor(shapes=(), **switches):
    sup = SamLmlSupervisor(SamLmlConfig(**switches), list(shapes))
    sup.attach(SimpleNamespace(extras=nn.ModuleDict()))
    return sup


# -- installation and contract ------------------------------------------------------------------
def test_installed():
    (entry,) = mmcore.PluginHost(load_only=["mmcore-sam-lml"]).plugins_info()
    assert entry["name"] == "mmcore-sam-lml"
    assert entry["kinds"] == ["attention_supervisor:sam_lml", "fusion:sam_lml"]
    assert "mmcore_add_commands" in entry["hooks"]


@pytest.mark.parametrize("check", contract_checks("attention_supervisor", {"kind": "sam_lml"}, config=sequence_config()),
                         ids=check_id)
def test_contract(check):
    check()


def test_runs_on_the_core_cross_attention_fusion_without_the_mi_term():
    core = {"kind": "cross_attention", "d_model": 16, "heads": 2}
    with pytest.raises(mmcore.ConfigError, match="set mi = false"):
        make_trainer(sequence_config({"kind": "sam_lml"}, fusion=core))
    _, states = run_steps(sequence_config({"kind": "sam_lml", "mi": False}, fusion=core), 2)
    terms = ("noise", "decomposition", "mixing", "variance", "context")
    assert {f"sam_lml/{t}" for t in terms} <= set(states[-1].losses)
    assert all(torch.isfinite(v) for v in states[-1].losses.values())


# -- reference: the wiring of each term on a hand-built record ------------------------------------
def test_noise_addition_eq3_to_6_scores_noise_keys_with_the_block():
    record = hand_record()
    sup = supervisor(variance=False, mixing=False, noise_std=0.5)
    terms = sup.record_terms(record, None, torch.Generator().manual_seed(3))
    draws = torch.Generator().manual_seed(3)
    noise = 0.5 * torch.randn(record.keys.shape, generator=draws)
    lam = torch.rand((1, 1, 1), generator=draws)
    clean, noisy = dot(record.queries, record.keys), dot(record.queries, noise)
    augmented = dot(record.queries, lam * record.keys + (1 - lam) * noise)
    # only key 0 is real: both queries x key 0
    assert terms["noise"] == pytest.approx((noisy - clean + 1).clamp_min(0)[0, :, 0].mean())
    assert terms["augmented_noise"] == pytest.approx((noisy - augmented + 1).clamp_min(0)[0, :, 0].mean())
    assert set(terms) == {"noise", "augmented_noise"}


def test_mixing_eq26_to_28_mixes_the_query_into_the_key_on_the_diagonal():
    record = hand_record()
    terms = supervisor(noise=False, augmented_noise=False, variance=False, mix_lambda=0.25).record_terms(
        record, None, torch.Generator())
    mixed = dot(record.queries, 0.25 * record.keys + 0.75 * record.queries)
    # step 0 is valid in both modalities: A_00 = 2, A^mix_00 = 0.25 * 2 + 0.75 = 1.25 -> max(2 - 1.25 + 1, 0)
    assert mixed[0, 0, 0] == pytest.approx(1.25)
    assert terms == {"mixing": pytest.approx(1.75)}


def test_mixing_needs_aligned_steps():
    record = hand_record(key_steps=3, key_mask=(T, T, T))
    terms = supervisor(noise=False, augmented_noise=False).record_terms(record, None, torch.Generator())
    assert set(terms) == {"variance"}


def test_decomposition_eq7_to_13_replaces_keys_with_the_irrelevant_part():
    record = hand_record("intra", key_mask=(T, T))
    sup = supervisor([RecordShape("intra/a", "intra", 2, 2)], noise=False, augmented_noise=False, variance=False,
                     context=False, epsilon=0.0)
    predictor = nn.Linear(2, 3)
    with torch.no_grad():
        terms = sup.record_terms(record, predictor, torch.Generator().manual_seed(5))
        irrelevant, relevant, reconstructed = sup.decomposers["intra__a"](record.keys)
    steps = torch.tensor([[T, T]])
    pairs = L.pair_mask(steps, steps)
    noise = torch.randn(irrelevant.shape, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        mi = ((predictor(irrelevant) - predictor(noise)) ** 2).sum(-1).mean()
    assert terms["decomposition"] == pytest.approx(L.ranking_hinge(dot(record.queries, irrelevant), record.scores, 1.0, pairs))
    assert terms["orthogonality"] == pytest.approx(L.orthogonality_loss(relevant, irrelevant, steps))
    assert terms["distance"] == pytest.approx(((record.keys - irrelevant) ** 2).mean())  # epsilon 0
    assert terms["reconstruction"] == pytest.approx(((record.keys - reconstructed) ** 2).mean().sqrt())
    assert terms["mi"] == pytest.approx(mi)


def test_eq29_weights():
    sup = supervisor(alpha=0.5, alpha_de=0.1, alpha_mix=2.0, alpha_c=3.0, distance_weight=10.0)
    sums = {name: torch.tensor(value) for name, value in dict(
        noise=1.0, augmented_noise=2.0, decomposition=4.0, orthogonality=1.0, mi=2.0, distance=0.5,
        reconstruction=3.0, mixing=1.5, variance=0.25, context=0.5).items()}
    out = sup.weighted(sums, torch.zeros(1))
    assert out["noise"] == pytest.approx(0.5 * 3.0)
    assert out["decomposition"] == pytest.approx(0.5 * (4.0 + 0.1 * (1.0 + 2.0 + 10.0 * 0.5 + 3.0)))
    assert out["mixing"] == pytest.approx(3.0)
    assert out["variance"] == pytest.approx(0.75) and out["context"] == pytest.approx(1.5)


@pytest.mark.parametrize("switch", SWITCHES)
def test_each_ablation_switch_removes_its_terms(switch):
    shapes = [RecordShape("intra/a", "intra", 2, 2)]
    sup = supervisor(shapes, **{switch: False})
    with torch.no_grad():
        intra = sup.record_terms(hand_record("intra", key_mask=(T, T)), nn.Linear(2, 1), torch.Generator())
        inter = sup.record_terms(hand_record(), None, torch.Generator())
    removed = {"decomposition": {"decomposition", "orthogonality", "distance", "reconstruction", "mi"}}.get(switch, {switch})
    assert not (set(intra) | set(inter)) & removed


@pytest.mark.parametrize("switch", ["intra", "inter"])
def test_intra_and_inter_switches_choose_the_records(switch):
    _, (state,) = run_steps(sequence_config({"kind": "sam_lml", switch: False}), 1)
    supervised = {"intra": {"noise", "decomposition", "variance", "context"}, "inter": {"noise", "mixing", "variance"}}
    kept = supervised["inter" if switch == "intra" else "intra"]
    assert {k.removeprefix("sam_lml/") for k in state.losses if k.startswith("sam_lml/")} - {"cross_modal"} == kept


# -- behaviour in training -------------------------------------------------------------------------
def test_all_terms_off_is_unsupervised_training():
    off = {"kind": "sam_lml", **{s: False for s in SWITCHES}}
    plain, _ = run_steps(sequence_config(), 3)
    switched_off, (state, *_) = run_steps(sequence_config(off), 3)
    assert not [k for k in state.losses if k.startswith("sam_lml/") and k != "sam_lml/cross_modal"]
    for p, q in zip(plain.model.parameters(), switched_off.model.parameters()):
        assert torch.equal(p, q)


def test_intra_only_supervision_leaves_the_inter_blocks_pooling_and_predictor_alone():
    no_dropout = {m: {"kind": "sequence", "d_model": 16, "layers": 1, "heads": 2, "dropout": 0.0} for m in ("a", "b")}
    intra_only = {"kind": "sam_lml", "inter": False, "decomposition": False}
    plain, _ = run_steps(sequence_config(encoders=no_dropout), 1)
    supervised, (state,) = run_steps(sequence_config(intra_only, encoders=no_dropout), 1)
    untouched = ("inter", "pool", "pool_query", "predictor")
    for (name, p), q in zip(plain.model.fusion.named_parameters(), supervised.model.fusion.parameters()):
        if name.startswith(untouched):
            assert torch.allclose(p.grad, q.grad, atol=1e-7), name
    assert not torch.allclose(plain.model.fusion.intra["a"].key.weight.grad, supervised.model.fusion.intra["a"].key.weight.grad)
    assert set(state.metrics) >= {f"supervisor/sam_lml/{t}" for t in ("noise", "augmented_noise", "variance", "context")}


def test_decomposition_networks_live_on_the_model_and_train():
    trainer, _ = run_steps(sequence_config({"kind": "sam_lml"}), 1)
    networks = trainer.model.extras["sam_lml"]
    assert set(networks) == {"intra__a", "intra__b"}
    assert all(p.grad is not None for p in networks.parameters())
