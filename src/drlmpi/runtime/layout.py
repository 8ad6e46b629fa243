"""The rank layout: a frozen map rank -> role, computed from the world size, the algorithm's role counts and the hosts.

Placement by host (hosts in the order their first rank appears):
  learner    the first host's ranks first (where a GPU would be), then the next hosts';
  ps         the next free ranks in the same order (next to the learners);
  replay, inference
             spread over the hosts, one per host in turn (each on its host's first free rank);
             with several hosts and no `--layout` count, `replay` defaults to one shard per host;
  bellman    the next free ranks (QT-Opt's target computation, next to the replay it samples);
  actor      every rank left.
At world size 1 the single rank has role `serial` and runs every role of the algorithm in one process.

Torch threads by role: a learner gets its host's cores less one per other rank there (shared by the
host's learners, at least 1); every other role gets 1. `torch_threads > 0` in the config sets all.
"""

from dataclasses import dataclass

from drlmpi.errors import UserError

ROLE_ORDER = ("learner", "ps", "replay", "inference", "bellman")
ROLES = ROLE_ORDER + ("actor", "serial")
SPREAD = ("replay", "inference")  # roles spread over the hosts


@dataclass(frozen=True)
class RoleSpec:
    """What an algorithm needs: counts of fixed roles, the least number of actors, and if it may run serially.

    `single_process` algorithms run on exactly one rank. `ps_across_hosts` ones share weights through a host's
    memory, and through a `ps` rank when the job spans several hosts (one by default there; none on one host).
    `explicit` names the roles whose count the user set.
    """

    fixed: tuple[tuple[str, int], ...] = ()
    min_actors: int = 1
    serial_ok: bool = True
    single_process: bool = False
    explicit: tuple[str, ...] = ()
    ps_across_hosts: bool = False

    def with_overrides(self, overrides: dict[str, int], algo: str = "this algorithm") -> "RoleSpec":
        if self.single_process and overrides:
            raise UserError(f"--layout: {algo} runs on a single rank and has no roles to lay out")
        fixed = dict(self.fixed)
        for role, n in overrides.items():
            if role not in ROLE_ORDER:
                raise UserError(f"--layout: unknown role '{role}' (roles: {', '.join(ROLE_ORDER)})")
            if n < 1 and fixed.get(role, 0) >= 1:  # (a role it has by default is one it cannot run without)
                raise UserError(f"--layout: {algo} needs at least one {role} rank, got {role}={n}")
            if n < 0:
                raise UserError(f"--layout: {role}={n} must be >= 0")
            fixed[role] = n
        return RoleSpec(tuple(fixed.items()), self.min_actors, self.serial_ok, self.single_process,
                        tuple(sorted(set(self.explicit) | set(overrides))), self.ps_across_hosts)


@dataclass(frozen=True)
class Layout:
    roles: tuple[str, ...]  # roles[rank]
    hosts: tuple[str, ...]  # hosts[rank]
    threads: tuple[int, ...] = ()  # torch threads of each rank (empty: not decided)

    @property
    def size(self) -> int:
        return len(self.roles)

    def ranks(self, role: str) -> list[int]:
        return [r for r, x in enumerate(self.roles) if x == role]

    def index(self, rank: int) -> int:
        """The rank's index among the ranks of its role."""
        return self.roles[:rank].count(self.roles[rank])

    def host_ids(self) -> list[int]:
        """Host number of every rank (hosts numbered in the order their first rank appears)."""
        order: dict[str, int] = {}
        return [order.setdefault(h, len(order)) for h in self.hosts]

    def table(self) -> str:
        rows = [f"{'rank':>5}  {'role':<9}  {'threads':>7}  host"]
        rows += [f"{r:>5}  {role:<9}  {(self.threads[r] if self.threads else '-'):>7}  {host}"
                 for r, (role, host) in enumerate(zip(self.roles, self.hosts))]
        return "\n".join(rows)


def parse_layout_arg(text: str) -> dict[str, int]:
    """`learner=2,replay=4,ps=1` -> {'learner': 2, 'replay': 4, 'ps': 1}."""
    out = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        role, sep, n = part.partition("=")
        if not sep or not n.strip().isdigit():
            raise UserError(f"--layout: expected role=count, got '{part}'")
        out[role.strip()] = int(n)
    return out


def role_counts(world_size: int, spec: RoleSpec, n_hosts: int) -> dict[str, int]:
    """Counts of the fixed roles: the spec's, with `replay` one per host by default on several hosts, and one
    `ps` there for a `ps_across_hosts` algorithm."""
    counts = dict(spec.fixed)
    if n_hosts > 1 and spec.ps_across_hosts and "ps" not in spec.explicit:
        counts["ps"] = max(counts.get("ps", 0), 1)
    if n_hosts > 1 and "replay" not in spec.explicit and counts.get("replay", 0):
        room = world_size - sum(counts.values()) - spec.min_actors  # ranks beyond the minimum
        counts["replay"] = max(counts["replay"], min(n_hosts, counts["replay"] + max(0, room)))
    return counts


def build_layout(world_size: int, spec: RoleSpec, algo: str, hosts: tuple[str, ...] | None = None,
                 cores: tuple[int, ...] | None = None, torch_threads: int = 0) -> Layout:
    """Assign a role to every rank, or raise UserError naming the rank count needed.

    hosts[rank]: host names; cores[rank]: cores usable by that rank (both default to one host, 1 core).
    """
    hosts = hosts or ("localhost",) * world_size
    cores = cores or (1,) * world_size
    if spec.single_process:
        if world_size != 1:
            raise UserError(f"{algo} runs on exactly 1 rank; got {world_size} (run it without mpiexec or with -n 1)")
        return Layout(("serial",), hosts, (torch_threads or cores[0],))
    if world_size == 1 and spec.serial_ok:
        return Layout(("serial",), hosts, (torch_threads or cores[0],))
    host_of = Layout(("actor",) * world_size, hosts).host_ids()
    by_host = [[r for r in range(world_size) if host_of[r] == h] for h in range(max(host_of) + 1)]
    counts = role_counts(world_size, spec, len(by_host))  # with the roles added for several hosts
    if world_size < sum(counts.values()) + spec.min_actors:
        need = ", ".join(f"{n} {role}" for role, n in counts.items() if n) or "no fixed roles"
        raise UserError(f"{algo} needs at least {sum(counts.values()) + spec.min_actors} ranks ({need}, "
                        f"{spec.min_actors}+ actor); got {world_size}")
    if spec.ps_across_hosts and len(by_host) > 1 and not counts.get("ps"):
        raise UserError(f"{algo} over {len(by_host)} hosts needs a ps rank to carry its weights between them "
                        f"(--layout ps=0 leaves none)")
    roles: list[str | None] = [None] * world_size
    in_order = [r for ranks in by_host for r in ranks]  # host 0's ranks first

    def take_first_free(role: str) -> None:
        r = next(r for r in in_order if roles[r] is None)
        roles[r] = role

    for role in ROLE_ORDER:
        for k in range(counts.get(role, 0)):
            if role in SPREAD:  # host k mod H first, else the next host with a free rank
                for h in range(len(by_host)):
                    free = [r for r in by_host[(k + h) % len(by_host)] if roles[r] is None]
                    if free:
                        roles[free[0]] = role
                        break
            else:
                take_first_free(role)
    final = tuple(role or "actor" for role in roles)
    return Layout(final, hosts, role_threads(final, host_of, cores, torch_threads))


def role_threads(roles: tuple[str, ...], host_of: list[int], cores: tuple[int, ...], requested: int = 0
                 ) -> tuple[int, ...]:
    """Torch threads per rank: `requested` if > 0; else learners share their host's cores left by the others."""
    if requested > 0:
        return (requested,) * len(roles)
    out = []
    for r, role in enumerate(roles):
        if role != "learner":
            out.append(1)
            continue
        mates = [q for q in range(len(roles)) if host_of[q] == host_of[r]]
        learners = sum(roles[q] == "learner" for q in mates)
        out.append(max(1, (cores[r] - (len(mates) - learners)) // learners))
    return tuple(out)


def share_of(total: int, i: int, n: int) -> int:
    """Part i of `total` split over n ranks as evenly as possible (an actor's share of the env steps)."""
    return total // n + (i < total % n)
