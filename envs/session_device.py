"""Session-v0's native vector env with the whole step on the learned simulator's device (issue 16).

`SessionMDP` keeps the session state in numpy arrays: with a device-resident learned simulator
(`simulators.learned.resident`) its step runs on the accelerator, but every request still
retrieves candidates, builds the observation and updates the session on the host, which at a
few thousand slots costs ten times the simulator step. `DeviceSessionMDP` is the same MDP with
that work on the device too, written as one fixed-shape step over all N slots (`_step`):

1. the host checks the actions (shape, finite scores, discrete indices), writes them, the
   masks of the slots that step and that reset, and fresh uniforms into fixed input buffers;
2. on the device, for every slot: the top-``slate_size`` candidates by score (a stable sort:
   ties by column, as the host path), the simulator's step (`ResidentStep.sample` with a
   mask: only stepping slots' users advance), the reward, the session bookkeeping (decayed
   category exposure, items shown, last click rate and watch ratio, step count), new users
   for the resetting slots, the next candidates and the observation, every state write masked
   by the slots it concerns;
3. one download per dtype of the observation, rewards, ends and info arrays; the host picks
   the rows of the slots the call concerns. The arrays land in pinned buffers that no array
   of an earlier step still uses (`device.Download` with a pool of 3), so a caller that drops
   a step's results (as a collector copying them into its buffer does) gets them without a
   host copy; one that keeps them gets fresh copies.

Fixed shapes and no host synchronisation inside (2) let it be captured once as a CUDA graph
and replayed each step (``graph``, default on CUDA): a step is then a few launches instead of
some 650 kernels, each of which costs more to launch from Python than to run at N = 4,096. On
the CPU (tests) the same `_step` runs eagerly.

The dynamics and distributions are Session-v0's; the draws are torch's, so a run is a different
(equally seeded) sample than the host path's:

- randomness: every call draws one 63-bit seed from the driver's ``candidates`` stream for
  the env's `torch.Generator`, which fills the call's uniforms (per slot: the candidates' and
  the simulator's draws; per user: the resetting slots' user draw), so a seed replays a run;
- users: the resetting slots draw their users among the ``users`` no stepping slot holds,
  without replacement, with probability proportional to how often the id occurs in ``users``
  (Efraimidis-Spirakis keys ``log(u) / w``, the top ones): the distribution of the host
  path's draw-again rule, not its per-slot streams; ``reset(options={"user": ...})`` still
  names them (checked by the driver as on the host);
- candidate duplicates are redrawn uniformly for a fixed number of rounds inside the step
  (`simulators.device_candidates`), and in further rounds after it in the rare case a row
  still repeats an item (then the observation is recomputed), so every row is distinct as on
  the host;
- a slot that does not step still has its responses computed (and discarded); its user's
  state is written back unchanged.

`session_vector_env` uses it when the backend is a device-resident `LearnedSimulator` (on an
accelerator; ``env_on_device`` forces it on or off, e.g. on the CPU for tests) and there is more
than one slot, so a 1-slot vector env still replays the single env. Only plain Session-v0:
UserAuthor-v0, MTFSession-v0 and MultiScenario-v0 keep their host-side env work around the
resident simulator step.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from recgym.device import Download
from recgym.envs.contract import FLOAT_HIGH, FLOAT_LOW
from recgym.envs.session import EXPOSURE_DECAY, _indices_from_actions, checked_scores
from recgym.envs.vector import BatchedMDP, Info, Obs
from recgym.simulators.device_candidates import DeviceCandidates

if TYPE_CHECKING:
    from recgym.envs.session import SessionMDP


def device_core_wanted(mdp: SessionMDP, option: bool | None) -> bool:
    """Whether `session_vector_env` should run `mdp` as a `DeviceSessionMDP`: `option` when
    given, else when the backend is a device-resident learned simulator and there are several
    slots. True for a backend that is not resident is a ValueError."""
    resident = bool(getattr(mdp.model, "resident", False))
    if option is None:
        return resident and mdp.n_slots > 1 and type(mdp).__name__ == "SessionMDP"
    if option and not resident:
        raise ValueError(
            f"{mdp.name}: env_on_device=True needs a learned simulator with its state on its "
            "device (LearnedSimulator(resident=True), the default on an accelerator)"
        )
    return bool(option)


class DeviceSessionMDP(BatchedMDP):
    """`SessionMDP`'s dynamics with the session state and the env's work on the simulator's
    device (see the module docstring). Built from a `SessionMDP` over a resident learned
    simulator; takes its spaces, settings and driver (backend, seed streams). `graph`: capture
    the step as a CUDA graph (default: on CUDA; falls back to eager, said in
    ``graph_error``, if capture fails)."""

    def __init__(self, host: SessionMDP, graph: bool | None = None) -> None:
        sim = host.model
        if not getattr(sim, "resident", False):
            raise ValueError(f"{host.name}: the device env needs a resident learned simulator")
        self.host, self.sim, self.driver = host, sim, host.driver
        self.name, self.n_slots = host.name, host.n_slots
        self.single_observation_space = host.single_observation_space
        self.single_action_space = host.single_action_space
        self.max_steps, self.slate_size = host.max_steps, host.slate_size
        self.action_mode, self.n_candidates = host.action_mode, host.n_candidates
        self.reward_weights = {
            name: float(w) for name, w in host.reward_weights.items() if name != "gift"
        }
        self.step_impl = sim._resident_step
        self.device = dev = sim.device
        cat = host.catalogue
        self.category, self.author = self.step_impl.category, self.step_impl.author
        self.item_x = torch.from_numpy(host.item_x.astype(np.float32)).to(dev)
        self.retrieve = DeviceCandidates(host.generator, dev)
        self.generator = torch.Generator(device=dev)
        # how often each user id occurs in `users`: the user draw's weights
        weights = np.bincount(self.driver.users, minlength=sim.n_users).astype(np.float64)
        if np.count_nonzero(weights) < host.n_slots:
            raise ValueError(
                f"{host.name}: {host.n_slots} slots need as many distinct users, `users` has "
                f"{np.count_nonzero(weights)}"
            )
        self.user_weights = torch.from_numpy(weights).to(dev)
        s, n = self.n_slots, self.n_candidates
        self.user = torch.zeros(s, dtype=torch.int64, device=dev)
        self.candidates = torch.zeros((s, n), dtype=torch.int64, device=dev)
        self.exposure = torch.zeros((s, cat.n_categories), dtype=torch.float64, device=dev)
        self.shown = torch.zeros((s, cat.n_items), dtype=torch.bool, device=dev)
        self.last = torch.zeros((s, 2), dtype=torch.float64, device=dev)
        self.steps = torch.zeros(s, dtype=torch.int64, device=dev)
        self._sim_cols = self.step_impl.n_uniforms(self.slate_size)
        # the step's fixed inputs (written in place before each call)
        self.inputs = {
            "scores": torch.zeros((s, n), dtype=torch.float32, device=dev),
            "stepping": torch.zeros(s, dtype=torch.bool, device=dev),
            "resetting": torch.zeros(s, dtype=torch.bool, device=dev),
            "named": torch.full((s,), -1, dtype=torch.int64, device=dev),
            "u": torch.zeros(
                (s, self._sim_cols + self.retrieve.n_uniforms), dtype=torch.float64, device=dev
            ),  # fmt: skip
            "u_users": torch.zeros(sim.n_users, dtype=torch.float64, device=dev),
        }
        self._mask = np.ones((s, n), dtype=np.int8)
        self._download = Download(pool=3)
        self.graph_wanted = dev.type == "cuda" if graph is None else bool(graph)
        if self.graph_wanted and dev.type != "cuda":
            raise ValueError(f"{self.name}: graph=True needs a CUDA device, got {dev}")
        self.graph_error: str | None = None
        self._graph: Any = None
        self._graph_state: Any = None
        self._outputs: dict[str, torch.Tensor] = {}

    # ------------------------------------------------------------------ BatchedMDP
    def seed(self, seed: int | None, np_random: np.random.Generator | None = None) -> None:
        self.driver.seed(seed, np_random)

    def reset_slots(
        self, slots: np.ndarray, options: Mapping[str, Any] | None = None
    ) -> tuple[Obs, Info]:
        slots = np.asarray(slots, dtype=np.int64)
        named = None
        if (options or {}).get("user") is not None:  # the driver draws and checks them
            self.driver.hold(self.user.cpu().numpy())
            named = self.driver.begin(options, slots)
        obs, out = self._run(None, np.zeros(0, np.int64), slots, named)
        return self._rows(obs, slots), {
            "user_id": out["user"][slots],
            "candidates": out["obs.item_id"][slots].copy(),
        }

    def step_slots(
        self, actions: Any, slots: np.ndarray
    ) -> tuple[Obs, np.ndarray, np.ndarray, np.ndarray, Info]:
        slots = np.asarray(slots, dtype=np.int64)
        obs, out = self._run(actions, slots, np.zeros(0, np.int64), None)
        info = self._step_info(out, slots)
        info["candidates"] = out["obs.item_id"][slots].copy()
        return (
            self._rows(obs, slots),
            out["reward"][slots],
            out["terminated"][slots],
            out["truncated"][slots],
            info,
        )

    def autoreset_step(
        self, actions: Any, stepped: np.ndarray, resetting: np.ndarray
    ) -> tuple[Obs, np.ndarray, np.ndarray, np.ndarray, Info, Info]:
        """`envs.vector.MDPVectorEnv`'s fused step: the `stepped` slots advance, the
        `resetting` ones begin a session (together every slot)."""
        obs, out = self._run(actions, stepped, resetting, None)
        info = self._step_info(out, stepped)
        info["candidates"] = out["obs.item_id"][stepped].copy()
        reset_info = {
            "user_id": out["user"][resetting],
            "candidates": out["obs.item_id"][resetting].copy(),
        }
        return obs, out["reward"], out["terminated"], out["truncated"], info, reset_info

    def vector_step(
        self, actions: Any, autoreset: np.ndarray
    ) -> tuple[Obs, np.ndarray, np.ndarray, np.ndarray, Info]:
        """`envs.vector.MDPVectorEnv`'s whole step: the slots in `autoreset` begin a session,
        the others advance; Gymnasium's vector info built from the full arrays directly."""
        stepped, resetting = np.flatnonzero(~autoreset), np.flatnonzero(autoreset)
        obs, out = self._run(actions, stepped, resetting, None, every_row=True)
        stepping = ~autoreset
        info: Info = {"user_id": out["user"], "_user_id": np.ones(self.n_slots, dtype=bool)}
        for key in ("slate", "categories"):
            info[key], info[f"_{key}"] = self._stepped_only(out[key], autoreset), stepping.copy()
        responses: Info = {}
        for key in [k for k in out if k.startswith("responses.")]:
            name = key.split(".", 1)[1]
            value = out[key].astype(np.int64) if name == "watch_ms" else out[key]
            responses[name] = self._stepped_only(value, autoreset)
            responses[f"_{name}"] = stepping.copy()
        info["responses"] = responses
        info["candidates_shown"] = self._stepped_only(out["candidates_shown"], autoreset)
        info["_candidates_shown"] = stepping.copy()
        info["candidates"] = obs["item_id"].copy()
        info["_candidates"] = np.ones(self.n_slots, dtype=bool)
        return obs, out["reward"], out["terminated"], out["truncated"], info

    @staticmethod
    def _stepped_only(value: np.ndarray, autoreset: np.ndarray) -> np.ndarray:
        """`value` (a fresh download) with the resetting slots' rows zeroed, as
        `envs.vector.scatter_info` leaves the slots that did not set a key."""
        if autoreset.any():
            value[autoreset] = 0
        return value

    # ------------------------------------------------------------------ one call
    def _run(
        self,
        actions: Any,
        stepped: np.ndarray,
        resetting: np.ndarray,
        named: np.ndarray | None,
        every_row: bool = False,
    ) -> tuple[Obs, dict[str, np.ndarray]]:
        """Fill the inputs, run the step (graph or eager), download every slot's outputs.
        `every_row`: `actions` has a row per slot (the rows of resetting slots are ignored)."""
        if not self.driver.seeded:
            raise RuntimeError(f"{self.name}: call reset() before step()")
        s = self.n_slots
        full = (s, self.n_candidates)
        if (
            every_row
            and self.action_mode == "scores"
            and isinstance(actions, np.ndarray)
            and actions.dtype == np.float32
            and actions.shape == full
            and np.isfinite(actions).all()
        ):
            scores = actions  # every row valid: uploaded as it is
        else:
            scores = np.zeros(full, dtype=np.float32)
            if len(stepped):
                picked = actions
                if every_row:
                    try:
                        picked = np.asarray(actions)[stepped]
                    except (TypeError, ValueError, IndexError):
                        raise ValueError(
                            f"{self.name}: actions must have a leading axis of {s} slots"
                        ) from None
                scores[stepped] = self._scores(picked, len(stepped))
        stepping, reset = np.zeros(s, dtype=bool), np.zeros(s, dtype=bool)
        stepping[stepped], reset[resetting] = True, True
        named_all = np.full(s, -1, dtype=np.int64)
        if named is not None:
            named_all[resetting] = named
        inp = self.inputs
        inp["scores"].copy_(torch.from_numpy(scores))
        inp["stepping"].copy_(torch.from_numpy(stepping))
        inp["resetting"].copy_(torch.from_numpy(reset))
        inp["named"].copy_(torch.from_numpy(named_all))
        self.generator.manual_seed(int(self.driver.streams.candidates.integers(0, 2**63 - 1)))
        inp["u"].uniform_(generator=self.generator)
        inp["u_users"].uniform_(generator=self.generator)
        out = self._graph_step() if self.graph_wanted else self._step(**inp)
        host = self._download(out)
        if host.pop("still_repeats"):  # rare: more redraw rounds, then observe again
            self.candidates.copy_(self.retrieve.distinct(self.candidates, self.generator))
            obs = {f"obs.{k}": v for k, v in self._observe().items()}
            host.update(self._download(obs))
        observation = {key[4:]: host[key] for key in host if key.startswith("obs.")}
        observation["mask"] = self._mask.copy()
        return {key: observation[key] for key in self.single_observation_space.spaces}, host

    def _scores(self, actions: Any, m: int) -> np.ndarray:
        """The stepped slots' actions as scores whose stable descending order shows their
        slate (a discrete action: 1 at the chosen candidate, 0 elsewhere)."""
        n = self.n_candidates
        if self.action_mode == "discrete":
            index = _indices_from_actions(self.name, actions, m, n)
            scores = np.zeros((m, n), dtype=np.float32)
            scores[np.arange(m), index] = 1.0
            return scores
        scores = checked_scores(self.name, actions, m, n)
        narrow = scores.astype(np.float32)
        if scores.dtype != np.float32 and not np.array_equal(narrow, scores):
            # float64 scores a float32 cannot hold: the host order, as scores 0 > -1 > -2 ...
            order = np.argsort(-scores, axis=1, kind="stable")
            narrow = np.empty_like(narrow)
            np.put_along_axis(narrow, order, -np.arange(n, dtype=np.float32)[None], axis=1)
        return narrow

    def _graph_step(self) -> dict[str, torch.Tensor]:
        """The step as a CUDA graph: captured on first use (and again after a seeded reset
        replaced the simulator's state tensors), replayed after."""
        if self._graph is None or self._graph_state is not self.sim.state:
            try:
                self._capture()
            except Exception as error:  # noqa: BLE001 - any capture failure: run eagerly
                self.graph_error = f"{type(error).__name__}: {error}"
                self.graph_wanted, self._graph = False, None
                torch.cuda.synchronize(self.device)
                return self._step(**self.inputs)
        self._graph.replay()
        return self._outputs

    def _capture(self) -> None:
        """Warm up (with no slot stepping or resetting: every write puts back what was there)
        on a side stream, then capture `_step` into a graph reading `inputs`."""
        inp = self.inputs
        saved = {key: value.clone() for key, value in inp.items()}
        inp["stepping"].zero_()
        inp["resetting"].zero_()
        inp["named"].fill_(-1)
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side):
            for _ in range(2):
                self._step(**inp)
        torch.cuda.current_stream(self.device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            self._outputs = self._step(**inp)
        for key, value in saved.items():
            inp[key].copy_(value)
        self._graph, self._graph_state = graph, self.sim.state

    # ------------------------------------------------------------------ the step
    def _step(
        self,
        scores: torch.Tensor,
        stepping: torch.Tensor,
        resetting: torch.Tensor,
        named: torch.Tensor,
        u: torch.Tensor,
        u_users: torch.Tensor,
    ) -> dict[str, torch.Tensor]:
        """Every slot at once, fixed shapes, no host synchronisation (see the module
        docstring): the stepping slots step, the resetting ones begin a session, then every
        slot's next candidates and observation."""
        out = self._advance(scores, stepping, u[:, : self._sim_cols])
        user = self._begin(resetting, named, u_users)
        fresh = stepping | resetting
        new, still = self.retrieve(self.sim.state.clicked[user], u[:, self._sim_cols :])
        self.candidates.copy_(torch.where(fresh[:, None], new, self.candidates))
        out["still_repeats"] = (still & fresh).any()
        out["user"] = user
        out.update({f"obs.{k}": v for k, v in self._observe().items()})
        return out

    def _advance(
        self, scores: torch.Tensor, stepping: torch.Tensor, u: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """The stepping slots' users answer their slates; their sessions advance."""
        order = torch.sort(scores, dim=1, descending=True, stable=True).indices
        slate = torch.gather(self.candidates, 1, order[:, : self.slate_size])
        users, shown_candidates = self.user.clone(), self.candidates.clone()
        res = self.step_impl.sample(self.sim.state, users, slate, mask=stepping, uniforms=u)
        r = res["responses"]
        reward = torch.zeros(self.n_slots, dtype=torch.float64, device=self.device)
        for behaviour, weight in self.reward_weights.items():
            if behaviour in r:
                reward += weight * r[behaviour].double().sum(dim=1)
        cats = self.category[slate]
        k = slate.shape[1]
        on = stepping[:, None]
        decayed = torch.where(on, self.exposure * EXPOSURE_DECAY, self.exposure)
        n_cat = self.exposure.shape[1]
        rows = torch.arange(self.n_slots, device=self.device)[:, None]
        flat = (rows * n_cat + cats).reshape(-1)
        add = on.expand(-1, k).reshape(-1).double()  # +1 per shown item of a stepping slot
        self.exposure.copy_(decayed.view(-1).index_add(0, flat, add).view_as(self.exposure))
        self.shown[rows, slate] = self.shown[rows, slate] | on
        duration = self.step_impl.duration[slate].clamp(min=1)
        last = torch.stack(
            [r["click"].double().sum(dim=1) / k, (r["watch_ms"] / duration).sum(dim=1) / k], 1
        )
        self.last.copy_(torch.where(on, last, self.last))
        self.steps.add_(stepping.long())
        left = res["left"] & stepping
        out = {
            "reward": torch.where(stepping, reward, 0.0),
            "terminated": left,
            "truncated": (self.steps >= self.max_steps) & ~left & stepping,
            "user_id": users,
            "slate": slate,
            "categories": cats,
            "candidates_shown": shown_candidates,
        }
        out.update({f"responses.{name}": value for name, value in r.items()})
        return out

    def _begin(
        self, resetting: torch.Tensor, named: torch.Tensor, u_users: torch.Tensor
    ) -> torch.Tensor:
        """New sessions in the resetting slots: named users, or drawn among the free ones."""
        held = torch.zeros_like(self.user_weights).index_add_(0, self.user, (~resetting).double())
        weights = torch.where(held > 0, 0.0, self.user_weights)
        keys = torch.where(weights > 0, torch.log(u_users.clamp(min=1e-300)) / weights, -torch.inf)
        top = torch.topk(keys, self.n_slots).indices
        rank = (torch.cumsum(resetting.long(), 0) - 1).clamp(min=0)
        drawn = torch.where(named >= 0, named, top[rank])
        user = torch.where(resetting, drawn, self.user)
        self.step_impl.begin(user, resetting)
        self.user.copy_(user)
        on = resetting[:, None]
        self.exposure.masked_fill_(on, 0.0)
        self.shown.masked_fill_(on, False)
        self.last.masked_fill_(on, 0.0)
        self.steps.masked_fill_(resetting, 0)
        return user

    def _observe(self) -> dict[str, torch.Tensor]:
        """`envs.session.observe` of every slot on the device (same values)."""
        users, candidates = self.user, self.candidates
        history = self.sim.state.clicked[users]
        valid = history >= 0
        n_valid = valid.sum(dim=1, keepdim=True)
        n_hist = n_valid.clamp(min=1).double()
        seen = history.clamp(min=0)
        cand_cat, cand_author = self.category[candidates], self.author[candidates]

        def share(cand_keys: torch.Tensor, hist_keys: torch.Tensor) -> torch.Tensor:
            same = (cand_keys[:, :, None] == hist_keys[:, None, :]) & valid[:, None, :]
            return same.sum(dim=2).double() / n_hist

        b, n = candidates.shape
        per_cand = torch.empty((b, n, 7), dtype=torch.float32, device=self.device)
        per_cand[..., :3] = self.item_x[candidates]
        per_cand[..., 3] = share(cand_cat, self.category[seen])
        per_cand[..., 4] = share(cand_author, self.author[seen])
        per_cand[..., 5] = torch.gather(self.exposure, 1, cand_cat) / 3.0
        per_cand[..., 6] = torch.gather(self.shown, 1, candidates).float()
        context = torch.cat(
            [
                (self.steps / self.max_steps)[:, None].double(),
                self.last,
                n_valid.double() / history.shape[1],
            ],
            dim=1,
        )
        return {
            "user": self.sim._t_user_x[users].clamp(FLOAT_LOW, FLOAT_HIGH),
            "context": context.clamp(FLOAT_LOW, FLOAT_HIGH).float(),
            "candidates": per_cand.clamp(FLOAT_LOW, FLOAT_HIGH),
            "item_id": candidates,
            "author_id": cand_author,
            "category_id": cand_cat,
            "user_id": users[:, None],
        }

    # ------------------------------------------------------------------ host side
    @staticmethod
    def _rows(obs: Obs, slots: np.ndarray) -> Obs:
        return {key: value[slots] for key, value in obs.items()}

    @staticmethod
    def _step_info(out: dict[str, np.ndarray], slots: np.ndarray) -> Info:
        responses = {
            key.split(".", 1)[1]: out[key][slots] for key in out if key.startswith("responses.")
        }
        responses["watch_ms"] = responses["watch_ms"].astype(np.int64)
        return {
            "user_id": out["user_id"][slots],
            "slate": out["slate"][slots],
            "categories": out["categories"][slots],
            "responses": responses,
            "candidates_shown": out["candidates_shown"][slots],
        }


__all__ = ["DeviceSessionMDP", "device_core_wanted"]
