import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jax_gen import checkpoint, engine
from jax_gen.config import (
    ExperimentConfig,
    FlowMatchingStrategyConfig,
    MLPConfig,
    MoonConfig,
    ResNetConfig,
    TrainConfig,
)
from jax_gen.models import (
    MLP,
    ClassConditioned,
    FourierFeatures,
    ResNet,
    SinusoidalTimeEmbed,
    create_model,
)

MODEL_CONFIGS = [
    MLPConfig(hidden_dim=32, depth=2, activation="selu"),
    MLPConfig(hidden_dim=32, depth=3, activation="relu"),
    ResNetConfig(hidden_dim=32, num_blocks=2),
    ResNetConfig(hidden_dim=32, num_blocks=1, use_layer_norm=False, activation="swish"),
]


def test_every_time_channel_varies_over_unit_interval():
    embed = SinusoidalTimeEmbed(32)
    values = jax.vmap(embed)(jnp.linspace(0.0, 1.0, 1001))
    spread = values.max(axis=0) - values.min(axis=0)
    # Even the slowest channels sweep their whole range: sin 0 -> 1, cos 1 -> -1.
    assert spread.min() >= 0.99


def test_transformer_frequencies_would_barely_move():
    # The pitfall: frequencies from 1 down to 1e-4 over t in [0, 1].
    freqs = 1e-4 ** (jnp.arange(16) / 15)
    spread = jnp.abs(jnp.sin(freqs * 1.0) - jnp.sin(0.0))
    assert jnp.mean(spread < 0.1) > 0.5


def test_embedding_distinguishes_neighbouring_grid_times():
    embed = SinusoidalTimeEmbed(32)
    t = jnp.arange(1001) / 1000
    values = jax.vmap(embed)(t)
    gaps = jnp.linalg.norm(jnp.diff(values, axis=0), axis=1)
    assert gaps.min() > 0.1


@pytest.mark.parametrize(
    "cfg", [MLPConfig(time_max_frequency=3.0), ResNetConfig(time_max_frequency=3.0)], ids=repr
)
def test_time_max_frequency_reaches_the_network(cfg):
    model = create_model(cfg, jax.random.key(0), data_dim=2)
    freqs = model.time_embed.frequencies()
    np.testing.assert_allclose([freqs.min(), freqs.max()], [np.pi, 3 * np.pi], rtol=1e-6)
    # The largest slope of the embedding in t is its highest frequency.
    slopes = jax.jacfwd(model.time_embed)(jnp.float32(0.0))
    np.testing.assert_allclose(jnp.abs(slopes).max(), 3 * np.pi, rtol=1e-6)
    with pytest.raises(ValueError, match="time_max_frequency"):
        type(cfg)(time_max_frequency=0.0)


@pytest.mark.parametrize("cfg", MODEL_CONFIGS, ids=repr)
def test_model_maps_one_point_and_vmaps(cfg):
    model = create_model(cfg, jax.random.key(0), data_dim=3)
    out = model(jnp.float32(0.3), jnp.ones(3))
    assert out.shape == (3,) and out.dtype == jnp.float32
    batch = jax.vmap(model)(jnp.linspace(0, 1, 5), jnp.ones((5, 3)))
    assert batch.shape == (5, 3)
    # The output depends on time.
    assert not np.allclose(batch[0], batch[-1])


@pytest.mark.parametrize("cfg", MODEL_CONFIGS, ids=repr)
def test_time_embedding_constants_are_not_trainable(cfg):
    model = create_model(cfg, jax.random.key(0), data_dim=2)
    params = eqx.filter(model.time_embed, eqx.is_inexact_array)
    assert jax.tree.leaves(params) == []
    grads = eqx.filter_grad(lambda m: jnp.sum(m(jnp.float32(0.5), jnp.ones(2))))(model)
    assert jax.tree.leaves(grads.time_embed) == []


def test_architectures_match_their_config():
    mlp = create_model(MLPConfig(hidden_dim=16, depth=3), jax.random.key(0), 2)
    assert isinstance(mlp, MLP) and len(mlp.layers) == 4
    resnet = create_model(ResNetConfig(hidden_dim=16, num_blocks=4), jax.random.key(0), 2)
    assert isinstance(resnet, ResNet) and len(resnet.blocks) == 4
    no_norm = create_model(ResNetConfig(use_layer_norm=False), jax.random.key(0), 2)
    assert all(block.norm is None for block in no_norm.blocks)


def test_same_key_same_weights_and_unknown_config_rejected():
    a = create_model(MLPConfig(), jax.random.key(1), 2)
    b = create_model(MLPConfig(), jax.random.key(1), 2)
    assert all(
        np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
    )
    with pytest.raises(TypeError, match="MoonConfig"):
        create_model(MoonConfig(), jax.random.key(0), 2)


# ----------------------------------------------------------------------------------------------
# Class conditioning
# ----------------------------------------------------------------------------------------------


def _leaves(model):
    return jax.tree.leaves(eqx.filter(model, eqx.is_inexact_array))


@pytest.mark.parametrize("cfg", MODEL_CONFIGS, ids=repr)
def test_conditional_model_output_depends_on_the_label(cfg):
    model = create_model(cfg, jax.random.key(0), data_dim=3, num_classes=4)
    assert model.num_classes == 4
    assert model.class_embed.weight.shape == (5, cfg.time_embed_dim)
    t, x = jnp.float32(0.4), jnp.array([0.3, -1.0, 0.5])
    outputs = jax.vmap(model, in_axes=(None, None, 0))(t, x, jnp.arange(5, dtype=jnp.int32))
    assert outputs.shape == (5, 3)
    gaps = np.linalg.norm(outputs[:, None] - outputs[None], axis=-1)
    assert np.all(gaps[~np.eye(5, dtype=bool)] > 1e-3), "five different classes (null included)"
    # label=None is the null class, the last row of the table.
    np.testing.assert_allclose(model(t, x), outputs[4], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(model(t, x, label=None), model(t, x, label=jnp.int32(4)))
    np.testing.assert_allclose(model(t, x, 2), outputs[2], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("cfg", MODEL_CONFIGS, ids=repr)
def test_unconditional_model_is_unchanged_and_refuses_labels(cfg):
    model = create_model(cfg, jax.random.key(3), data_dim=2)
    same = create_model(cfg, jax.random.key(3), data_dim=2, num_classes=0)
    assert model.class_embed is None and model.num_classes == 0
    for a, b in zip(_leaves(model), _leaves(same), strict=True):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="unconditional but was given a label"):
        model(jnp.float32(0.5), jnp.ones(2), label=jnp.int32(1))


def test_class_table_is_trainable_and_only_the_rows_used_get_gradient():
    model = create_model(MLPConfig(hidden_dim=16, depth=2), jax.random.key(0), 2, num_classes=3)

    def loss(m, labels):
        out = jax.vmap(m, in_axes=(None, 0, 0))(jnp.float32(0.5), jnp.ones((4, 2)), labels)
        return jnp.sum(out**2)

    grads = eqx.filter_grad(loss)(model, jnp.array([0, 0, 2, 2], jnp.int32))
    row_norms = np.linalg.norm(np.asarray(grads.class_embed.weight), axis=1)
    assert row_norms[0] > 0 and row_norms[2] > 0
    assert row_norms[1] == 0 and row_norms[3] == 0  # the null class (row 3) was not used
    grads = eqx.filter_grad(loss)(model, jnp.array([3, 3, 1, 1], jnp.int32))
    assert np.linalg.norm(np.asarray(grads.class_embed.weight[3])) > 0


def test_negative_number_of_classes_is_rejected():
    with pytest.raises(ValueError, match="num_classes"):
        create_model(MLPConfig(), jax.random.key(0), 2, num_classes=-1)


def test_class_conditioned_fixes_the_label_without_recompiling():
    model = create_model(ResNetConfig(hidden_dim=16, num_blocks=1), jax.random.key(1), 2, 3)
    x = jnp.ones((4, 2))

    @eqx.filter_jit
    @eqx.debug.assert_max_traces(max_traces=1)
    def apply(f, x):
        return jax.vmap(f, in_axes=(None, 0))(jnp.float32(0.2), x)

    for label in range(3):
        expected = jax.vmap(lambda z, k=label: model(jnp.float32(0.2), z, label=k))(x)
        np.testing.assert_allclose(apply(ClassConditioned(model, label), x), expected, rtol=1e-6)
    null = ClassConditioned(model, None)
    np.testing.assert_allclose(null(jnp.float32(0.2), x[0]), model(jnp.float32(0.2), x[0]))


def test_fourier_features_are_x_and_sines_and_cosines_of_its_projections():
    features = FourierFeatures(3, 2, 1.0, key=jax.random.key(0))
    # Frequencies chosen so that 2 pi B x lands on known angles for x = (1, 2).
    features = eqx.tree_at(
        lambda f: f.frequencies, features, jnp.array([[0.25, 0.0], [0.0, 0.25], [0.5, -0.25]])
    )
    x = jnp.array([1.0, 2.0])
    angles = np.array([np.pi / 2, np.pi, 0.0])
    expected = np.concatenate([[1.0, 2.0], np.sin(angles), np.cos(angles)])
    np.testing.assert_allclose(features(x), expected, atol=1e-6)
    assert features.out_dim == 8


def test_fourier_frequencies_have_the_configured_scale():
    model = create_model(MLPConfig(fourier_features=4096, fourier_scale=0.5), jax.random.key(1), 2)
    frequencies = np.asarray(model.fourier.frequencies)
    assert frequencies.shape == (4096, 2)
    # 8192 N(0, 0.25) draws: the std's standard error is 0.5 / sqrt(2 * 8192) = 0.004.
    assert abs(frequencies.std() - 0.5) < 0.016 and abs(frequencies.mean()) < 0.02
    assert model.layers[0].in_features == 2 + 2 * 4096 + MLPConfig().time_embed_dim


def test_mlp_without_fourier_features_reads_x_alone():
    cfg = MLPConfig(hidden_dim=16, depth=2, fourier_features=0)
    model = create_model(cfg, jax.random.key(0), 2)
    assert model.fourier is None and model.layers[0].in_features == 2 + MLPConfig().time_embed_dim


def test_fourier_frequencies_get_no_gradient_and_are_never_trained(tmp_path):
    cfg = ExperimentConfig(
        strategy=FlowMatchingStrategyConfig(num_transport_steps=8),
        model=MLPConfig(hidden_dim=16, depth=2, fourier_features=8),
        dataset=MoonConfig(),
        train=TrainConfig(batch_size=32, train_steps=20, log_interval=10, seed=3),
    )
    model = create_model(cfg.model, jax.random.key(3), 2)
    grads = eqx.filter_grad(lambda m: jnp.sum(m(jnp.float32(0.5), jnp.ones(2)) ** 2))(model)
    assert not np.any(grads.fourier.frequencies) and np.any(grads.layers[0].weight)

    fitted = engine.fit(cfg, check_finite=False)
    start = engine.init_state(cfg).state.model
    np.testing.assert_array_equal(fitted.model.fourier.frequencies, start.fourier.frequencies)
    assert not np.array_equal(fitted.model.layers[0].weight, start.layers[0].weight)
    # Saved with the model: loading restores this run's frequencies, not the skeleton's.
    path = tmp_path / "run.eqx"
    fitted.save(path)
    loaded = checkpoint.load(path).state.model
    np.testing.assert_array_equal(loaded.fourier.frequencies, start.fourier.frequencies)
    skeleton = checkpoint.skeleton(cfg, data_dim=2).model
    assert not np.array_equal(skeleton.fourier.frequencies, start.fourier.frequencies)


@pytest.mark.parametrize(
    "field, value", [("fourier_features", -1), ("fourier_scale", 0.0), ("fourier_scale", -1.0)]
)
def test_bad_fourier_options_are_rejected(field, value):
    with pytest.raises(ValueError, match=field):
        MLPConfig(**{field: value})
