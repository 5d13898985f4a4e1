"""The usage example of docs/python.md: DDPM on the cat with a hand-written loop, then sampled."""

import equinox as eqx
import jax
import optax

from jax_gen.config import CatConfig, DDPMStrategyConfig, MLPConfig
from jax_gen.data import get_batch
from jax_gen.models import create_model
from jax_gen.sampling import sample
from jax_gen.strategies import create_strategy

strategy = create_strategy(DDPMStrategyConfig(num_transport_steps=50))
init_key, train_key, sample_key = jax.random.split(jax.random.key(0), 3)
model = create_model(MLPConfig(hidden_dim=256, depth=6), init_key, data_dim=2)
optimizer = optax.adam(1e-3)
opt_state = optimizer.init(eqx.filter(model, eqx.is_inexact_array))


@eqx.filter_jit
def step(model, opt_state, key):
    batch_key, loss_key = jax.random.split(key)
    batch = get_batch(batch_key, CatConfig(), batch_size=512)

    def loss(model):
        keys = jax.random.split(loss_key, batch.shape[0])
        return jax.vmap(strategy.loss_fn, in_axes=(None, 0, 0))(model, batch, keys).mean()

    value, grads = eqx.filter_value_and_grad(loss)(model)
    params = eqx.filter(model, eqx.is_inexact_array)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return eqx.apply_updates(model, updates), opt_state, value


num_steps = 2000
for i in range(num_steps):
    model, opt_state, loss = step(model, opt_state, jax.random.fold_in(train_key, i))
print(f"final loss {float(loss):.4f}")

samples, trajectory, _ = sample(
    strategy, model, sample_key, num_samples=1000, data_dim=2, keep_trajectory=True
)
print(samples.shape, trajectory.shape)  # (1000, 2) (51, 1000, 2)
