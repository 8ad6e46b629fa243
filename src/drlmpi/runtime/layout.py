"""The rank layout: a frozen map rank -> role, computed from the world size and the algorithm's role counts.

Fixed roles take the lowest ranks in the order learner, ps, replay, inference, logger;
`actor` ranks fill the rest. At world size 1 the single rank has role `serial` and
runs every role of the algorithm in one process.
"""

from dataclasses import dataclass

from drlmpi.errors import UserError

ROLE_ORDER = ("learner", "ps", "replay", "inference", "logger")
ROLES = ROLE_ORDER + ("actor", "serial")


@dataclass(frozen=True)
class RoleSpec:
    """What an algorithm needs: counts of fixed roles, the least number of actors, and if it may run serially.

    `single_process` algorithms run on exactly one rank.
    """

    fixed: tuple[tuple[str, int], ...] = ()
    min_actors: int = 1
    serial_ok: bool = True
    single_process: bool = False

    def with_overrides(self, overrides: dict[str, int], algo: str = "this algorithm") -> "RoleSpec":
        if self.single_process and overrides:
            raise UserError(f"--layout: {algo} runs on a single rank and has no roles to lay out")
        fixed = dict(self.fixed)
        for role, n in overrides.items():
            if role not in ROLE_ORDER:
                raise UserError(f"--layout: unknown role '{role}' (roles: {', '.join(ROLE_ORDER)})")
            if n < 0:
                raise UserError(f"--layout: {role}={n} must be >= 0")
            fixed[role] = n
        return RoleSpec(tuple(fixed.items()), self.min_actors, self.serial_ok, self.single_process)

    @property
    def min_ranks(self) -> int:
        return sum(n for _, n in self.fixed) + self.min_actors


@dataclass(frozen=True)
class Layout:
    roles: tuple[str, ...]  # roles[rank]
    hosts: tuple[str, ...]  # hosts[rank]

    @property
    def size(self) -> int:
        return len(self.roles)

    def ranks(self, role: str) -> list[int]:
        return [r for r, x in enumerate(self.roles) if x == role]

    def table(self) -> str:
        rows = [f"{'rank':>5}  {'role':<9}  host"]
        rows += [f"{r:>5}  {role:<9}  {host}" for r, (role, host) in enumerate(zip(self.roles, self.hosts))]
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


def build_layout(world_size: int, spec: RoleSpec, algo: str, hosts: tuple[str, ...] | None = None) -> Layout:
    """Assign a role to every rank, or raise UserError naming the rank count needed."""
    hosts = hosts or ("localhost",) * world_size
    if spec.single_process:
        if world_size != 1:
            raise UserError(f"{algo} runs on exactly 1 rank; got {world_size} (run it without mpiexec or with -n 1)")
        return Layout(("serial",), hosts)
    if world_size == 1 and spec.serial_ok:
        return Layout(("serial",), hosts)
    if world_size < spec.min_ranks:
        need = ", ".join(f"{n} {role}" for role, n in spec.fixed if n) or "no fixed roles"
        raise UserError(
            f"{algo} needs at least {spec.min_ranks} ranks ({need}, {spec.min_actors}+ actor); got {world_size}"
        )
    fixed = dict(spec.fixed)
    roles = [role for role in ROLE_ORDER for _ in range(fixed.get(role, 0))]
    roles += ["actor"] * (world_size - len(roles))
    return Layout(tuple(roles), hosts)
