"""The learned user simulator: a multi-behaviour response model and a leave model fitted to logs.

A `LearnedSimulator` satisfies `simulators.protocol.UserModel`, so an env runs on it exactly as on
the ground-truth world. It is fitted from any KuaiRand-schema log (`recgym.data.load`):

- `build_log_table` sorts the log per user in time, cuts sessions (a gap longer than
  `session_gap_minutes` between consecutive exposures of a user starts a new one), builds the
  catalogue, computes every causal feature both models need (vectorised over the whole log) and
  splits sessions into training, held-out users and held-out days.
- `ResponseModel` (an `nn.Module`) predicts, for one user and one item, the click, and for each
  click state the long view, like, follow, comment, forward and hate and the watch-ratio
  distribution (inputs and loss in its docstring).
- `LeaveModel` is a discrete-time hazard: the probability that an exposure is the session's last,
  given the session so far (`leave_features`). A request of K items ends the session with
  probability ``1 - prod_k (1 - h_k)``.

A *request* is `request_size` consecutive exposures of a session counted from its start (KuaiRand
logs carry no request ids; in the synthetic world's logs this recovers the real requests exactly,
because each request writes `slate_size` = 6 consecutive rows). Every user-history input is
taken as of the start of the row's request, so the simulator, which answers a whole slate at
once, sees exactly the inputs training saw.

The package is split by what the parts are (RecSim's decomposition):

- `config`: `SimulatorConfig` and the constants the parts share;
- `table`: `LogTable`, `build_log_table` and the causal features (affinity, session context);
- `state`: `UserState` (histories, category counts, `PairCounts`) and the per-session state;
- `response`: `ResponseModel`, its embedding vocabulary and the watch-time sampler;
- `leave`: `LeaveModel` and `leave_features`;
- `fit`: the two training loops behind `LearnedSimulator.fit`;
- `checkpoint`: `save`/`load` of a checkpoint directory, `CheckpointError`;
- `simulator`: `LearnedSimulator`, which composes them.

Everything public is re-exported here: import from `recgym.simulators.learned`.
"""

from .checkpoint import CHECKPOINT_FILES, FORMAT_VERSION, CheckpointError
from .config import (
    AFFINITY_DIM,
    BROWSE_MS,
    CONDITIONAL,
    CONTEXT_DIM,
    LONG_VIEW_MS,
    SIGNALS,
    SimulatorConfig,
)
from .leave import LEAVE_CLIP, QUICK_SKIP_RATIO, LeaveModel, leave_features, logged_leave_features
from .response import ResponseModel
from .simulator import LearnedSimulator
from .state import PairCounts, UserState
from .table import LOG_FLAGS, SPLITS, LogTable, affinity_features, build_log_table

__all__ = [
    "AFFINITY_DIM",
    "BROWSE_MS",
    "CHECKPOINT_FILES",
    "CONDITIONAL",
    "CONTEXT_DIM",
    "FORMAT_VERSION",
    "LEAVE_CLIP",
    "LOG_FLAGS",
    "LONG_VIEW_MS",
    "QUICK_SKIP_RATIO",
    "SIGNALS",
    "SPLITS",
    "CheckpointError",
    "LearnedSimulator",
    "LeaveModel",
    "LogTable",
    "PairCounts",
    "ResponseModel",
    "SimulatorConfig",
    "UserState",
    "affinity_features",
    "build_log_table",
    "leave_features",
    "logged_leave_features",
]
