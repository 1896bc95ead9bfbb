"""Dynamic pricing: a DQN agent trained in a demand simulator, behind guardrails it cannot cross.

The simulator is calibrated from the shop's own sales: for every product a Poisson regression of
daily units on log(price / list price), promotions, weekday, season and trend gives its price
elasticity and its demand at list price (``estimate_elasticities``). The simulator then plays the
shop in 15-minute steps: expected units in a step are the product's daily demand at list price x
the weekday and time-of-day profile x (price / list price) ^ elasticity, where shoppers are more
price-sensitive on weekday daytimes than in the evening peak; sold units are drawn from a Poisson.

The agent sees, per product, where its price sits between the floor and the ceiling, its cost,
its elasticity and the clock, and picks one of five moves (down or up by the maximum step or half
of it, or stay). Whatever it picks goes through ``Guardrails.apply``: never below cost x (1 +
minimum margin), never above the ceiling, never more than the maximum change per step. The price
is a property of the variant, not of the shopper: nothing about who asks goes in.

    elasticities = estimate_elasticities(session)
    agent = train_agent(Simulator(products_for_simulation(session, elasticities)), AgentConfig())
    PricingEngine(agent).reprice(session, now)   # the agent carries its guardrails
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from sqlalchemy import select
from sqlalchemy.orm import Session
from torch import nn

from assistant.commerce.models import DailySales, PriceChange, Product
from assistant.commerce.service import Prices, round_price

ARTIFACT_VERSION = "kefu.pricing.dqn.v1"
STEPS_PER_DAY = 96  # 15-minute re-pricing
ACTIONS = (-1.0, -0.5, 0.0, 0.5, 1.0)  # share of the maximum step
ELASTICITY_RANGE = (-4.0, -0.3)
_MOVES = np.array(ACTIONS)

Progress = Callable[[str, int, int, float], None]


# -------------------------------------------------------------------------------------------- guardrails


@dataclass(frozen=True)
class Guardrails:
    """Limits every price the engine sets. Prices are integer fen, on a 10-fen grid."""

    min_margin: float = 0.10  # floor = cost x (1 + min_margin)
    ceiling: float = 1.30  # ceiling = list price x ceiling
    max_step: float = 0.05  # largest relative change from one re-pricing to the next

    def floor_price(self, cost: int) -> int:
        return _round_up(cost * (1 + self.min_margin))

    def ceiling_price(self, list_price: int, cost: int) -> int:
        # a ceiling below the floor would leave no legal price: the floor wins
        return max(_round_down(list_price * self.ceiling), self.floor_price(cost))

    def apply(self, proposed: float, current: int, cost: int, list_price: int) -> int:
        """The legal price closest to ``proposed``: inside [floor, ceiling] and at most ``max_step``
        from ``current``. A current price outside [floor, ceiling] (a merchant's manual price, a
        changed cost) goes to the nearest bound at once: floor and ceiling outrank the step limit."""
        floor, ceiling = self.floor_price(cost), self.ceiling_price(list_price, cost)
        if current < floor:
            return floor
        if current > ceiling:
            return ceiling
        low = max(floor, _round_up(current * (1 - self.max_step)))
        high = min(ceiling, _round_down(current * (1 + self.max_step)))
        if low > high:  # the grid has no point inside the step: stay
            return current
        return int(min(max(round_price(proposed), low), high))

    def apply_many(self, proposed: np.ndarray, current: np.ndarray, cost: np.ndarray,
                   list_price: np.ndarray) -> np.ndarray:
        """``apply`` over arrays (the simulator's hot path); the same result, element by element."""
        proposed, current = np.asarray(proposed, float), np.asarray(current, float)
        floor, ceiling = self._bounds(np.asarray(cost, float), np.asarray(list_price, float))
        low = np.maximum(floor, np.ceil(np.round(current * (1 - self.max_step), 6) / 10) * 10)
        high = np.minimum(ceiling, np.floor(np.round(current * (1 + self.max_step), 6) / 10) * 10)
        inside = np.clip(np.round(proposed / 10) * 10, low, high)
        out = np.where(low > high, current, inside)
        out = np.where(current > ceiling, ceiling, out)
        return np.where(current < floor, floor, out)

    def count_violations(self, previous: np.ndarray, price: np.ndarray, cost: np.ndarray,
                         list_price: np.ndarray) -> dict[str, int]:
        """How many of the moves ``previous`` -> ``price`` break each limit (``violations`` over arrays)."""
        floor, ceiling = self._bounds(cost, list_price)
        inside = (previous >= floor) & (previous <= ceiling)
        return {"floor": int(np.sum(price < floor)), "ceiling": int(np.sum(price > ceiling)),
                "max_step": int(np.sum(inside & (np.abs(price - previous) > self.max_step * previous + 1e-6)))}

    def _bounds(self, cost: np.ndarray, list_price: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``floor_price`` and ``ceiling_price`` over arrays."""
        floor = np.ceil(np.round(cost * (1 + self.min_margin), 6) / 10) * 10
        return floor, np.maximum(np.floor(np.round(list_price * self.ceiling, 6) / 10) * 10, floor)

    def violations(self, previous: int, price: int, cost: int, list_price: int) -> list[str]:
        """Which limits the move ``previous`` -> ``price`` breaks (an independent check of ``apply``)."""
        floor, ceiling = self.floor_price(cost), self.ceiling_price(list_price, cost)
        broken = []
        if price < floor:
            broken.append("floor")
        if price > ceiling:
            broken.append("ceiling")
        if floor <= previous <= ceiling and abs(price - previous) > self.max_step * previous + 1e-6:
            broken.append("max_step")
        return broken


def _round_up(fen: float) -> int:
    return int(math.ceil(round(fen, 6) / 10) * 10)


def _round_down(fen: float) -> int:
    return int(math.floor(round(fen, 6) / 10) * 10)


# ---------------------------------------------------------------------------------- elasticity estimates


@dataclass(frozen=True)
class Elasticity:
    sku: str
    elasticity: float  # d log(units) / d log(price)
    std_error: float
    daily_units: float  # expected units per day at list price, recent weeks, no promotion
    observations: int


def estimate_elasticities(session: Session) -> dict[str, Elasticity]:
    """Per-product price elasticity from the daily sales history (Poisson GLM; stock-out days out)."""
    import statsmodels.api as sm

    products = list(session.scalars(select(Product).where(Product.active).order_by(Product.id)))
    history: dict[int, list] = {p.id: [] for p in products}
    for row in session.execute(select(DailySales.product_id, DailySales.day, DailySales.units, DailySales.price,
                                      DailySales.promo).where(DailySales.stockout.is_(False))
                               .order_by(DailySales.product_id, DailySales.day)):
        if row.product_id in history:
            history[row.product_id].append(row)
    out: dict[str, Elasticity] = {}
    for product in products:
        rows = history[product.id]
        if len(rows) < 60:
            continue
        days = [r.day for r in rows]
        units = np.array([r.units for r in rows], float)
        log_ratio = np.log(np.array([r.price for r in rows], float) / product.price)
        promo = np.array([r.promo for r in rows], float)
        doy = np.array([d.timetuple().tm_yday for d in days], float)
        weekend = np.array([d.weekday() >= 5 for d in days], float)
        age = np.array([(d - days[-1]).days for d in days], float) / 365.0
        angle = 2 * math.pi * doy / 365.25
        design = np.column_stack([np.ones(len(rows)), log_ratio, promo, weekend, np.sin(angle), np.cos(angle),
                                  np.sin(2 * angle), np.cos(2 * angle), age])
        if np.ptp(log_ratio) < 1e-6:
            continue  # the price never moved: nothing to learn from
        try:
            fit = sm.GLM(units, design, family=sm.families.Poisson()).fit()
        except (ValueError, np.linalg.LinAlgError):
            continue
        elasticity = float(np.clip(fit.params[1], *ELASTICITY_RANGE))
        # demand at list price over the last eight weeks, no promotion, the model's own season and trend
        recent = np.array([(days[-1] - d).days < 56 for d in days])
        base = design[recent].copy()
        base[:, 1] = 0.0
        base[:, 2] = 0.0
        daily = float(np.mean(np.exp(base @ fit.params)))
        out[product.sku] = Elasticity(product.sku, elasticity, float(fit.bse[1]), daily, len(rows))
    return out


# ---------------------------------------------------------------------------------------------- simulator


@dataclass(frozen=True)
class SimProduct:
    sku: str
    list_price: int  # fen
    cost: int  # fen
    elasticity: float
    daily_units: float  # at list price


def products_for_simulation(session: Session, elasticities: dict[str, Elasticity]) -> list[SimProduct]:
    products = session.scalars(select(Product).where(Product.active).order_by(Product.id))
    return [SimProduct(p.sku, p.price, p.cost, elasticities[p.sku].elasticity, elasticities[p.sku].daily_units)
            for p in products if p.sku in elasticities]


def intraday_profile() -> np.ndarray:
    """Share of a day's shoppers in each 15-minute step: quiet nights, a lunch bump, an evening peak."""
    hours = np.arange(STEPS_PER_DAY) / 4.0
    shape = (0.15 + np.exp(-((hours - 12.5) / 1.8) ** 2) * 0.9 + np.exp(-((hours - 21.0) / 1.7) ** 2) * 1.6
             + np.exp(-((hours - 16.0) / 3.0) ** 2) * 0.5)
    shape[hours < 7] *= 0.3
    return shape / shape.sum()


def sensitivity(step_of_day: np.ndarray | int, weekday: np.ndarray | int) -> np.ndarray:
    """How strongly shoppers react to price at a time, as a factor on the product's elasticity:
    comparing prices at work on weekdays (1.25), browsing in the evening peak (0.8)."""
    hours = np.asarray(step_of_day) / 4.0
    weekday = np.asarray(weekday)
    evening = (hours >= 19) & (hours < 24)
    daytime = (hours >= 9) & (hours < 18) & (weekday < 5)
    return np.where(evening, 0.8, np.where(daytime, 1.25, 1.0))


WEEKDAY_FACTOR = np.array([0.95, 0.95, 0.95, 0.95, 1.0, 1.2, 1.2])


class Simulator:
    """Every product at once, one 15-minute step at a time."""

    def __init__(self, products: Sequence[SimProduct], guardrails: Guardrails = Guardrails(), seed: int = 0,
                 start: dt.datetime = dt.datetime(2026, 1, 5)):
        if not products:
            raise ValueError("no products to simulate: estimate elasticities from a sales history first")
        self.products = list(products)
        self.guardrails = guardrails
        self.list_price = np.array([p.list_price for p in products], float)
        self.cost = np.array([p.cost for p in products], float)
        self.elasticity = np.array([p.elasticity for p in products], float)
        self.daily = np.array([p.daily_units for p in products], float)
        self.floor = np.array([guardrails.floor_price(p.cost) for p in products], float)
        self.ceiling = np.array([guardrails.ceiling_price(p.list_price, p.cost) for p in products], float)
        self.profile = intraday_profile()
        self.rng = np.random.default_rng(seed)
        self.start = start
        self.reset()

    def reset(self, prices: np.ndarray | None = None, step: int = 0) -> None:
        self.step_index = step
        self.price = np.array(self.list_price if prices is None else prices, float)
        self.last_move = np.zeros(len(self.products))

    def clock(self, step: int | None = None) -> tuple[int, int]:
        step = self.step_index if step is None else step
        day = self.start + dt.timedelta(minutes=15 * step)
        return step % STEPS_PER_DAY, day.weekday()

    def expected_units(self, prices: np.ndarray, step: int | None = None) -> np.ndarray:
        slot, weekday = self.clock(step)
        level = self.daily * WEEKDAY_FACTOR[weekday] * self.profile[slot]
        return level * (prices / self.list_price) ** (self.elasticity * sensitivity(slot, weekday))

    def observe(self) -> np.ndarray:
        slot, weekday = self.clock()
        return observation(self.price, self.list_price, self.cost, self.floor, self.ceiling, self.elasticity,
                           slot, weekday, self.last_move)

    def move(self, new_prices: np.ndarray) -> dict[str, np.ndarray]:
        """Set prices (already through the guardrails), let one step of shoppers buy."""
        expected = self.expected_units(new_prices)
        units = self.rng.poisson(expected)
        self.last_move = new_prices / self.price - 1
        self.price = new_prices
        self.step_index += 1
        return {"units": units, "expected_units": expected, "margin": units * (new_prices - self.cost),
                "expected_margin": expected * (new_prices - self.cost), "revenue": units * new_prices}


def observation(price, list_price, cost, floor, ceiling, elasticity, slot, weekday, last_move) -> np.ndarray:
    """The agent's view of each product (rows): nothing about any shopper."""
    n = len(price)
    span = np.maximum(ceiling - floor, 1.0)
    angle = 2 * math.pi * slot / STEPS_PER_DAY
    return np.column_stack([
        (price - floor) / span * 2 - 1, price / list_price - 1, cost / list_price, elasticity / 2,
        np.full(n, math.sin(angle)), np.full(n, math.cos(angle)), np.full(n, float(weekday >= 5)),
        np.clip(last_move * 10, -1, 1),
    ]).astype(np.float32)


OBSERVATION_SIZE = 8


# -------------------------------------------------------------------------------------------------- agent


class QNetwork(nn.Module):
    def __init__(self, hidden: int = 64):
        super().__init__()
        self.layers = nn.Sequential(nn.Linear(OBSERVATION_SIZE, hidden), nn.ReLU(), nn.Linear(hidden, hidden),
                                    nn.ReLU(), nn.Linear(hidden, len(ACTIONS)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


@dataclass
class AgentConfig:
    episodes: int = 48
    episode_days: int = 3
    gamma: float = 0.9
    learning_rate: float = 1e-3
    batch_size: int = 512
    buffer: int = 200_000
    train_every: int = 4  # environment steps per gradient step
    target_sync: int = 250  # gradient steps between target-network copies
    epsilon_start: float = 1.0
    epsilon_end: float = 0.05
    hidden: int = 64
    move_penalty: float = 0.05  # reward lost per maximum-step move: prices should not flicker for nothing
    seed: int = 0


@dataclass
class Agent:
    """The trained Q-network, its guardrails, and what it was calibrated on (``meta``)."""

    network: QNetwork
    guardrails: Guardrails
    meta: dict = field(default_factory=dict)

    def act(self, observations: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return self.network(torch.from_numpy(observations)).argmax(dim=1).numpy()

    def propose(self, observations: np.ndarray, prices: np.ndarray) -> np.ndarray:
        return moved(prices, self.act(observations), self.guardrails.max_step)

    def simulated_products(self) -> list[SimProduct]:
        return [SimProduct(**p) for p in self.meta["simulation"]]

    def save(self, out: Path) -> None:
        out.mkdir(parents=True, exist_ok=True)
        torch.save(self.network.state_dict(), out / "dqn.pt")
        meta = {**self.meta, "version": ARTIFACT_VERSION, "guardrails": asdict(self.guardrails),
                "actions": list(ACTIONS), "observation": OBSERVATION_SIZE}
        (out / "pricing.json").write_text(json.dumps(meta, indent=2, ensure_ascii=False))

    @classmethod
    def load(cls, path: Path) -> Agent:
        meta = json.loads((path / "pricing.json").read_text())
        if meta.get("version") != ARTIFACT_VERSION:
            raise ValueError(f"{path} holds a {meta.get('version')} model, not {ARTIFACT_VERSION}")
        network = QNetwork(meta["config"]["hidden"])
        network.load_state_dict(torch.load(path / "dqn.pt", weights_only=True))
        network.eval()
        return cls(network, Guardrails(**meta["guardrails"]), meta)


def moved(prices: np.ndarray, actions: np.ndarray, max_step: float) -> np.ndarray:
    """The prices the chosen actions (indices into ``ACTIONS``) propose, before the guardrails."""
    return prices * (1 + _MOVES[actions] * max_step)


def train_agent(simulator: Simulator, config: AgentConfig = AgentConfig(), *, data_sha256: str = "",
                elasticities: dict[str, Elasticity] | None = None, progress: Progress | None = None) -> Agent:
    """Double DQN on the simulator's expected margin per step (scaled per product), every product
    an environment of its own, episodes starting from random legal prices at random times."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a 64-wide MLP: more threads only wait for each other
    try:
        return _train_agent(simulator, config, data_sha256, elasticities, progress)
    finally:
        torch.set_num_threads(threads)


def _train_agent(simulator: Simulator, config: AgentConfig, data_sha256: str,
                 elasticities: dict[str, Elasticity] | None, progress: Progress | None) -> Agent:
    started = time.perf_counter()
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    sim = simulator
    guardrails = sim.guardrails
    network, target = QNetwork(config.hidden), QNetwork(config.hidden)
    target.load_state_dict(network.state_dict())
    optimiser = torch.optim.Adam(network.parameters(), lr=config.learning_rate)
    n = len(sim.products)
    size = config.buffer
    states = np.zeros((size, OBSERVATION_SIZE), np.float32)
    next_states = np.zeros_like(states)
    actions = np.zeros(size, np.int64)
    rewards = np.zeros(size, np.float32)
    filled, cursor, gradient_steps, env_steps = 0, 0, 0, 0
    # a product's margin at list price in an average step: the reward's unit
    scale = np.maximum(sim.daily / STEPS_PER_DAY * (sim.list_price - sim.cost), 1e-3)
    steps_per_episode = config.episode_days * STEPS_PER_DAY
    total_steps = config.episodes * steps_per_episode
    losses: list[float] = []
    for episode in range(config.episodes):
        start_prices = np.array([guardrails.apply(rng.uniform(lo, hi), int(lp), int(c), int(lp))
                                 for lo, hi, c, lp in zip(sim.floor, sim.ceiling, sim.cost, sim.list_price)], float)
        sim.reset(start_prices, step=int(rng.integers(0, 7 * STEPS_PER_DAY)))
        for _ in range(steps_per_episode):
            epsilon = max(config.epsilon_end, config.epsilon_start
                          - (config.epsilon_start - config.epsilon_end) * env_steps / (0.6 * total_steps))
            state = sim.observe()
            chosen = Agent(network, guardrails).act(state)
            explore = rng.random(n) < epsilon
            chosen[explore] = rng.integers(0, len(ACTIONS), explore.sum())
            prices = guardrails.apply_many(moved(sim.price, chosen, guardrails.max_step), sim.price, sim.cost,
                                           sim.list_price)
            outcome = sim.move(prices)
            reward = (outcome["expected_margin"] / (scale * STEPS_PER_DAY * sim.profile[sim.clock(sim.step_index - 1)[0]])
                      - config.move_penalty * np.abs(_MOVES[chosen]))
            following = sim.observe()
            index = (cursor + np.arange(n)) % size
            states[index], actions[index], rewards[index], next_states[index] = state, chosen, reward, following
            cursor = (cursor + n) % size
            filled = min(filled + n, size)
            env_steps += 1
            if filled >= config.batch_size and env_steps % config.train_every == 0:
                batch = rng.integers(0, filled, config.batch_size)
                s, a = torch.from_numpy(states[batch]), torch.from_numpy(actions[batch])
                r, s2 = torch.from_numpy(rewards[batch]), torch.from_numpy(next_states[batch])
                with torch.no_grad():
                    best = network(s2).argmax(dim=1, keepdim=True)
                    goal = r + config.gamma * target(s2).gather(1, best).squeeze(1)
                q = network(s).gather(1, a.unsqueeze(1)).squeeze(1)
                loss = nn.functional.smooth_l1_loss(q, goal)
                optimiser.zero_grad()
                loss.backward()
                nn.utils.clip_grad_norm_(network.parameters(), 10.0)
                optimiser.step()
                gradient_steps += 1
                losses.append(loss.item())
                if gradient_steps % config.target_sync == 0:
                    target.load_state_dict(network.state_dict())
        if progress:
            progress("DQN", episode + 1, config.episodes, float(np.mean(losses[-200:])) if losses else 0.0)
    network.eval()
    meta = {"config": asdict(config), "products": len(sim.products), "env_steps": env_steps,
            "gradient_steps": gradient_steps, "train_seconds": round(time.perf_counter() - started, 1),
            "data_sha256": data_sha256,
            "elasticities": {k: asdict(v) for k, v in (elasticities or {}).items()},
            "simulation": [asdict(p) for p in sim.products]}
    return Agent(network, guardrails, meta)


# ------------------------------------------------------------------------------------------------ policies


class Policy:
    name = "policy"

    def prices(self, sim: Simulator, history: list[np.ndarray]) -> np.ndarray:
        raise NotImplementedError


class FixedPrices(Policy):
    name = "fixed"

    def prices(self, sim: Simulator, history: list[np.ndarray]) -> np.ndarray:
        return sim.price.copy()


class RuleBased(Policy):
    """A merchant's rule: every 4 hours compare the units sold with the same 4 hours a week ago; 10%
    more -> raise by the maximum step, 10% fewer -> lower by it (within the guardrails)."""

    name = "rule"
    every = 16

    def prices(self, sim: Simulator, history: list[np.ndarray]) -> np.ndarray:
        step = len(history)
        week = 7 * STEPS_PER_DAY
        if step % self.every or step < week:
            return sim.price.copy()
        recent = np.sum(history[step - self.every:step], axis=0)
        before = np.sum(history[step - week - self.every:step - week], axis=0)
        move = np.where(recent > before * 1.1, 1.0, np.where(recent < before * 0.9, -1.0, 0.0))
        return sim.price * (1 + move * sim.guardrails.max_step)


class ModelOptimal(Policy):
    """A reference, not a contender: it reads the simulator's own demand model and moves toward the
    margin-maximising price of the moment, cost x e / (1 + e) for the elasticity e in force (the
    ceiling when demand is inelastic). No real shop knows its elasticities this exactly."""

    name = "model_optimal"

    def prices(self, sim: Simulator, history: list[np.ndarray]) -> np.ndarray:
        slot, weekday = sim.clock()
        e = sim.elasticity * sensitivity(slot, weekday)
        return np.where(e < -1.0, sim.cost * e / np.minimum(1 + e, -1e-6), sim.ceiling)


class DQNPolicy(Policy):
    name = "dqn"

    def __init__(self, agent: Agent):
        self.agent = agent

    def prices(self, sim: Simulator, history: list[np.ndarray]) -> np.ndarray:
        return self.agent.propose(sim.observe(), sim.price)


def simulate(policy: Policy, products: Sequence[SimProduct], guardrails: Guardrails, *, days: int = 91,
             seed: int = 1, start: dt.datetime = dt.datetime(2026, 1, 5)) -> dict:
    """A quarter in the simulator from list prices: margin, revenue, units and guardrail violations
    (checked on every price move by ``Guardrails.violations``, independently of ``apply``)."""
    sim = Simulator(products, guardrails, seed=seed, start=start)
    history: list[np.ndarray] = []
    margin = revenue = units = 0.0
    violations = {"floor": 0, "ceiling": 0, "max_step": 0}
    moves = 0
    daily_margin = []
    day_margin = 0.0
    for step in range(days * STEPS_PER_DAY):
        proposed = policy.prices(sim, history)
        prices = guardrails.apply_many(proposed, sim.price, sim.cost, sim.list_price)
        for broken, count in guardrails.count_violations(sim.price, prices, sim.cost, sim.list_price).items():
            violations[broken] += count
        moves += int(np.sum(prices != sim.price))
        outcome = sim.move(prices)
        history.append(outcome["units"])
        step_margin = float(outcome["margin"].sum())
        margin += step_margin
        day_margin += step_margin
        revenue += float(outcome["revenue"].sum())
        units += float(outcome["units"].sum())
        if (step + 1) % STEPS_PER_DAY == 0:
            daily_margin.append(day_margin / 100)
            day_margin = 0.0
    final = sim.price / sim.list_price
    return {"policy": policy.name, "days": days, "gross_margin_yuan": round(margin / 100, 2),
            "revenue_yuan": round(revenue / 100, 2), "units": int(units),
            "margin_rate": round(margin / revenue, 4) if revenue else 0.0,
            "violations": violations, "violations_total": sum(violations.values()), "price_moves": moves,
            "final_price_ratio": {"mean": round(float(final.mean()), 3), "min": round(float(final.min()), 3),
                                  "max": round(float(final.max()), 3)},
            "daily_margin_yuan": [round(x, 2) for x in daily_margin]}


# ------------------------------------------------------------------------------------------------- the shop


def data_digest(session: Session) -> str:
    h = hashlib.sha256()
    for row in session.execute(select(DailySales.product_id, DailySales.day, DailySales.units, DailySales.price,
                                      DailySales.stockout).order_by(DailySales.product_id, DailySales.day)):
        h.update(repr(tuple(row)).encode())
    return h.hexdigest()


class PricingEngine:
    """Re-prices the shop's variants: one product-level move per product from the agent, applied to
    every variant through the guardrails. Products in a running promotion keep their price (the
    merchant set the promotion on that price)."""

    def __init__(self, agent: Agent):
        self.agent = agent
        self.guardrails = agent.guardrails
        self.elasticity = {sku: e["elasticity"] for sku, e in agent.meta.get("elasticities", {}).items()}

    def reprice(self, session: Session, now: dt.datetime) -> list[PriceChange]:
        prices = Prices(session, now)
        products = [p for p in session.scalars(select(Product).where(Product.active).order_by(Product.id))
                    if p.sku in self.elasticity and prices.promotion(p) is None]
        if not products:
            return []
        slot = (now.hour * 60 + now.minute) // 15
        reference = [p.variants[0] for p in products]  # the product's own price point: its first variant
        price = np.array([v.price for v in reference], float)
        list_price = np.array([v.list_price or v.price for v in reference], float)
        cost = np.array([v.cost for v in reference], float)
        floor = np.array([self.guardrails.floor_price(v.cost) for v in reference], float)
        ceiling = np.array([self.guardrails.ceiling_price(int(lp), v.cost) for v, lp in zip(reference, list_price)],
                           float)
        # the move of the previous re-pricing, as the simulator's agent saw it (none: 0)
        last_move = dict.fromkeys((v.id for v in reference), 0.0)
        for variant_id, after, before in session.execute(
                select(PriceChange.variant_id, PriceChange.price, PriceChange.previous)
                .where(PriceChange.variant_id.in_(list(last_move)), PriceChange.source == "engine",
                       PriceChange.changed_at >= now - dt.timedelta(minutes=24 * 60 // STEPS_PER_DAY))
                .order_by(PriceChange.changed_at)):
            last_move[variant_id] = after / before - 1 if before else 0.0
        state = observation(price, list_price, cost, floor, ceiling,
                            np.array([self.elasticity[p.sku] for p in products]), slot, now.weekday(),
                            np.array([last_move[v.id] for v in reference]))
        factors = self.agent.propose(state, price) / price
        changes = []
        for product, factor in zip(products, factors):
            for variant in product.variants:
                new = self.guardrails.apply(variant.price * factor, variant.price, variant.cost,
                                            variant.list_price or variant.price)
                if new != variant.price:
                    changes.append(PriceChange(variant_id=variant.id, price=new, previous=variant.price,
                                               changed_at=now, source="engine"))
                    variant.price = new
        session.add_all(changes)
        session.commit()
        return changes


# ------------------------------------------------------------------------------------------------ reports


def evaluate(agent: Agent, products: Sequence[SimProduct], *, days: int = 91, seeds: Sequence[int] = (1, 2, 3),
             start: dt.datetime = dt.datetime(2026, 1, 5)) -> dict:
    """Fixed prices, the rule-based baseline and the agent over the same simulated quarters (the same
    random shoppers for each policy, per seed), with the agent's own guardrails."""
    guardrails = agent.guardrails
    policies: list[Policy] = [FixedPrices(), RuleBased(), DQNPolicy(agent), ModelOptimal()]
    runs = {p.name: [simulate(p, products, guardrails, days=days, seed=s, start=start) for s in seeds]
            for p in policies}
    summary = {}
    for name, results in runs.items():
        summary[name] = {
            "gross_margin_yuan": round(float(np.mean([r["gross_margin_yuan"] for r in results])), 2),
            "revenue_yuan": round(float(np.mean([r["revenue_yuan"] for r in results])), 2),
            "units": round(float(np.mean([r["units"] for r in results])), 1),
            "margin_rate": round(float(np.mean([r["margin_rate"] for r in results])), 4),
            "violations_total": int(sum(r["violations_total"] for r in results)),
            "price_moves": int(np.mean([r["price_moves"] for r in results])),
            "final_price_ratio_mean": round(float(np.mean([r["final_price_ratio"]["mean"] for r in results])), 3),
        }
    rule = summary["rule"]["gross_margin_yuan"]
    fixed = summary["fixed"]["gross_margin_yuan"]
    return {"days": days, "seeds": list(seeds), "products": len(products), "guardrails": asdict(guardrails),
            "policies": summary,
            "dqn_margin_vs_rule": round(summary["dqn"]["gross_margin_yuan"] / rule, 4) if rule else None,
            "dqn_margin_vs_fixed": round(summary["dqn"]["gross_margin_yuan"] / fixed, 4) if fixed else None,
            "daily_margin_yuan": {name: np.mean([r["daily_margin_yuan"] for r in results], axis=0).round(2).tolist()
                                  for name, results in runs.items()}}


def write_report(result: dict, report_dir: Path) -> Path:
    """pricing_report.json and pricing_margin.png (cumulative gross margin over the quarter)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    report_dir.mkdir(parents=True, exist_ok=True)
    (report_dir / "pricing_report.json").write_text(json.dumps(result, indent=2, ensure_ascii=False))
    figure, axes = plt.subplots(1, 2, figsize=(11, 4))
    for name, daily in result["daily_margin_yuan"].items():
        axes[0].plot(np.cumsum(daily) / 1000, label=name)
        axes[1].plot(daily, label=name, linewidth=0.8)
    axes[0].set(title="cumulative gross margin", xlabel="day", ylabel="thousand yuan")
    axes[1].set(title="gross margin per day", xlabel="day", ylabel="yuan")
    axes[0].legend()
    figure.suptitle(f"simulated quarter, {result['products']} products, mean of {len(result['seeds'])} seeds")
    figure.tight_layout()
    plot = report_dir / "pricing_margin.png"
    figure.savefig(plot, dpi=110)
    plt.close(figure)
    return plot
