"""Podman for the container test: its configuration, the local base images and a compose project.

No container registry is reachable here, so the images that the Dockerfile and the compose file name
(python:3.11-slim-bookworm, postgres:15, redis:7) are made on this machine: a Debian bookworm base by
debootstrap from the Debian mirror apt uses, and stand-ins built on it from Debian's packages
(tests/deploy/images/). Each carries a label with the hash of its recipe; an image whose label
matches is reused, so only the first run on a machine pays for them."""

from __future__ import annotations

import hashlib
import inspect
import json
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
IMAGES = Path(__file__).resolve().parent / "images"
RECIPE_LABEL = "org.criptoren.test.recipe"
DEBIAN_IMAGE = "localhost/criptoren-test/debian:bookworm"
SUITE = "bookworm"
# Which local recipe stands in for an image named in the Dockerfile or the compose file.
STAND_INS = {"python": "python", "postgres": "postgres", "redis": "redis"}
# Host CA bundle and pip settings go into the Python base: pip inside the build reaches PyPI as here.
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
PIP_SETTINGS = ("index-url", "extra-index-url", "trusted-host", "cert", "client-cert", "timeout", "default-timeout",
                "retries", "proxy")  # fmt: skip


SLIM_APT = """\
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
APT::Keep-Downloaded-Packages "false";
Acquire::Languages "none";
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb || true"; };
"""
SLIM_DPKG = """\
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
"""


class PodmanError(RuntimeError):
    pass


def missing_tools() -> list[str]:
    missing = [tool for tool in ("podman", "debootstrap", "runc") if shutil.which(tool) is None]
    helpers = (Path("/usr/lib/podman"), Path("/usr/libexec/podman"))
    return missing + [h for h in ("netavark", "aardvark-dns") if not any((d / h).exists() for d in helpers)]


def containers_conf(directory: Path) -> Path:
    """A containers.conf for this machine: runc (crun refuses cgroups in hybrid mode), ulimits within
    the hard limits (podman's default nofile of 1048576 fails: setrlimit not permitted) and netavark,
    whose aardvark-dns lets the services find each other by name (CNI would need a DNS plugin)."""
    nofile = _within(resource.RLIMIT_NOFILE, 65536)
    nproc = _within(resource.RLIMIT_NPROC, 32768)
    path = directory / "containers.conf"
    path.write_text(
        "[containers]\n"
        f'default_ulimits = ["nofile={nofile}:{nofile}", "nproc={nproc}:{nproc}"]\n'
        "[engine]\n"
        'runtime = "runc"\n'
        "[network]\n"
        'network_backend = "netavark"\n'
    )
    return path


def _within(limit: int, wanted: int) -> int:
    hard = resource.getrlimit(limit)[1]
    return wanted if hard == resource.RLIM_INFINITY else min(hard, wanted)


def run(
    args: list[str], env: dict[str, str], *, check: bool = True, timeout: float = 900, cwd: Path = ROOT
) -> subprocess.CompletedProcess[str]:
    """Run a command, its output captured; on failure, raise with the output in the message."""
    result = subprocess.run(args, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False)
    if check and result.returncode != 0:
        raise PodmanError(
            f"`{' '.join(args)}` exited with {result.returncode}\n--- stdout\n{result.stdout[-6000:]}"
            f"\n--- stderr\n{result.stderr[-6000:]}"
        )
    return result


# What a build prints when the network failed it (DNS, the mirror, PyPI), not its recipe.
NETWORK_FAILURES = re.compile(
    r"Temporary failure resolving|Could not resolve|Failed to fetch|Unable to fetch some archives|"
    r"Connection (?:refused|reset|timed out)|Read timed out|NewConnectionError|ReadTimeoutError|"
    r"Max retries exceeded|No matching distribution found"
)


def build(args: list[str], env: dict[str, str], log: Callable[[str], None], attempts: int = 3) -> None:
    """Run a build; again, after a pause, when it failed on the network (a name not resolved, a
    mirror or PyPI not answering), up to `attempts` times. Any other failure raises at once."""
    for attempt in range(1, attempts + 1):
        result = run(args, env, check=False, timeout=1800)
        if result.returncode == 0:
            return
        failure = NETWORK_FAILURES.search(result.stdout + result.stderr)
        if attempt == attempts or failure is None:
            raise PodmanError(
                f"`{' '.join(args)}` exited with {result.returncode} (attempt {attempt})\n--- stdout\n"
                f"{result.stdout[-8000:]}\n--- stderr\n{result.stderr[-4000:]}"
            )
        log(f"build failed on the network ({failure.group(0)}); trying again")
        time.sleep(10 * attempt)


# ---- the Debian mirror and apt options of this machine ----------------------------------------------


@dataclass(frozen=True)
class AptSource:
    uri: str
    suite: str
    components: tuple[str, ...]


def apt_sources(etc: Path = Path("/etc/apt")) -> list[AptSource]:
    """The host's enabled Debian `deb` entries for bookworm (main, -updates, -security), from
    sources.list (one-line format) and sources.list.d (*.list and deb822 *.sources)."""
    entries: list[AptSource] = []
    files = [etc / "sources.list", *sorted((etc / "sources.list.d").glob("*.list"))]
    for file in files:
        if not file.is_file():
            continue
        for line in file.read_text().splitlines():
            words = re.sub(r"\[[^]]*\]", "", line.split("#", 1)[0]).split()  # options such as [arch=amd64] aside
            if len(words) >= 4 and words[0] == "deb":
                entries.append(AptSource(words[1], words[2], tuple(words[3:])))
    for file in sorted((etc / "sources.list.d").glob("*.sources")):
        for stanza in re.split(r"\n\s*\n", file.read_text()):
            fields = _deb822(stanza)
            if "deb" not in fields.get("types", "").split() or fields.get("enabled", "yes").lower() == "no":
                continue
            for uri in fields.get("uris", "").split():
                for suite in fields.get("suites", "").split():
                    entries.append(AptSource(uri, suite, tuple(fields.get("components", "").split())))
    return [
        e for e in entries if e.suite in (SUITE, f"{SUITE}-updates", f"{SUITE}-security") and "main" in e.components
    ]


def _deb822(stanza: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    key = None
    for line in stanza.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        if line[0].isspace() and key:
            fields[key] += " " + line.strip()
        elif ":" in line:
            key, value = line.split(":", 1)
            key = key.strip().lower()
            fields[key] = value.strip()
    return fields


def apt_acquire_options() -> str:
    """The host's apt options that decide whether the mirror can be used (proxies; the Release
    files' dates, for a mirror that serves a snapshot), as an apt.conf fragment."""
    names = ("Acquire::Check-Valid-Until", "Acquire::Check-Date", "Acquire::http::Proxy", "Acquire::https::Proxy")
    lines = []
    for name in names:
        value = subprocess.run(["apt-config", "dump", name], capture_output=True, text=True, check=False).stdout
        match = re.search(rf'^{re.escape(name)} "(.*)";$', value, re.MULTILINE)
        if match:
            lines.append(f'{name} "{match.group(1)}";')
    return "".join(line + "\n" for line in lines)


def pip_conf() -> str:
    """The host's pip settings that reach an index over the network (file:// indexes and
    find-links stay behind), with the CA bundle at its place in the image."""
    listed = subprocess.run(
        [sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True, check=False
    ).stdout
    settings: dict[str, str] = {}
    for line in listed.splitlines():
        match = re.match(r"^(?::env:|global)\.([a-z-]+)='(.*)'$", line)
        if match and match.group(1) in PIP_SETTINGS:
            settings[match.group(1)] = match.group(2)
    for name in ("index-url", "extra-index-url"):
        if name in settings:
            remote = [url for url in settings[name].split() if url.startswith(("http://", "https://"))]
            settings[name] = " ".join(remote)
    settings["cert"] = str(HOST_CA_BUNDLE)
    settings.pop("client-cert", None)
    return "[global]\n" + "".join(f"{name} = {value}\n" for name, value in sorted(settings.items()) if value)


# ---- the base images ---------------------------------------------------------------------------------


def _digest(*parts: str | bytes) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part.encode() if isinstance(part, str) else part)
        h.update(b"\0")
    return h.hexdigest()[:24]


def image_label(image: str, env: dict[str, str]) -> str | None:
    result = run(["podman", "image", "inspect", image], env, check=False)
    if result.returncode != 0:
        return None
    labels = json.loads(result.stdout)[0].get("Labels") or {}
    return labels.get(RECIPE_LABEL)


def ensure_debian(env: dict[str, str], log: Callable[[str], None], stale: list[str]) -> str:
    """`debootstrap --variant=minbase bookworm` from the host's Debian mirror, imported as an image;
    apt in it uses the host's Debian sources and acquire options."""
    sources = apt_sources()
    mirror = next((s.uri for s in sources if s.suite == SUITE), None)
    if mirror is None:
        raise PodmanError(f"no Debian {SUITE} main mirror in /etc/apt/sources.list(.d); debootstrap needs one")
    sources_list = "".join(f"deb {s.uri} {s.suite} {' '.join(s.components)}\n" for s in sources)
    acquire = apt_acquire_options()
    # The recipe: this function's own code, what it writes and where it downloads from.
    recipe = _digest(inspect.getsource(ensure_debian), SUITE, mirror, sources_list, acquire, SLIM_APT, SLIM_DPKG)
    if image_label(DEBIAN_IMAGE, env) == recipe:
        return recipe
    stale.extend(_image_id(DEBIAN_IMAGE, env))
    log(f"building {DEBIAN_IMAGE}: debootstrap --variant=minbase {SUITE} {mirror}")
    with tempfile.TemporaryDirectory(prefix="criptoren-debootstrap-") as tmp:
        rootfs = Path(tmp) / "rootfs"
        run(["debootstrap", "--variant=minbase", SUITE, str(rootfs), mirror], env, timeout=1800)
        (rootfs / "etc/apt/sources.list").write_text(sources_list)
        (rootfs / "etc/apt/apt.conf.d/90criptoren-host").write_text(acquire)
        # Slim as Debian's official images: no apt caches or downloaded packages, no documentation.
        (rootfs / "etc/apt/apt.conf.d/91criptoren-slim").write_text(SLIM_APT)
        (rootfs / "etc/dpkg/dpkg.cfg.d/91criptoren-slim").write_text(SLIM_DPKG)
        for pattern in ("var/cache/apt/*.bin", "var/cache/apt/archives/*.deb", "var/lib/apt/lists/*_*",
                        "usr/share/doc/*/*", "usr/share/man/*", "usr/share/info/*", "usr/share/locale/*"):  # fmt: skip
            for path in rootfs.glob(pattern):
                if path.name == "copyright":
                    continue
                shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "--numeric-owner", "-c", "."], stdout=subprocess.PIPE)
        try:
            args = ["podman", "import", "--change", f"LABEL {RECIPE_LABEL}={recipe}", "--change", 'CMD ["bash"]']
            imported = subprocess.run(
                [*args, "-", DEBIAN_IMAGE], stdin=tar.stdout, env=env, capture_output=True, text=True, check=False
            )
        finally:
            assert tar.stdout is not None
            tar.stdout.close()
            tar.wait()
        if imported.returncode != 0 or tar.returncode != 0:
            raise PodmanError(f"podman import of the debootstrap tree failed: {imported.stderr[-4000:]}")
    return recipe


def ensure_stand_in(
    kind: str, tag: str, parent_recipe: str, env: dict[str, str], log: Callable[[str], None], stale: list[str]
) -> None:
    """Build tests/deploy/images/<kind> as `tag` unless an image with the same recipe is there."""
    source = IMAGES / kind
    extra: dict[str, bytes] = {}
    if kind == "python":
        extra = {"ca-certificates.crt": HOST_CA_BUNDLE.read_bytes(), "pip.conf": pip_conf().encode()}
    files = {p.name: p.read_bytes() for p in sorted(source.iterdir()) if p.is_file()}
    recipe = _digest(parent_recipe, *(f"{name}:{_digest(data)}" for name, data in sorted({**files, **extra}.items())))
    if image_label(tag, env) == recipe:
        return
    stale.extend(_image_id(tag, env))
    log(f"building {tag} from {source.relative_to(ROOT)}")
    with tempfile.TemporaryDirectory(prefix=f"criptoren-image-{kind}-") as tmp:
        context = Path(tmp)
        for name, data in {**files, **extra}.items():
            (context / name).write_bytes(data)
            (context / name).chmod((source / name).stat().st_mode if (source / name).exists() else 0o644)
        args = ["podman", "build", "--pull=never", "--layers=false", "--label", f"{RECIPE_LABEL}={recipe}"]
        build([*args, "-t", tag, "-f", str(context / "Containerfile"), str(context)], env, log)


def referenced_images() -> dict[str, str]:
    """The images the Dockerfile (FROM) and the compose file (postgres, redis) use, fully qualified,
    each with the local recipe that stands in for it."""
    names = set(re.findall(r"^FROM\s+(\S+)", (ROOT / "Dockerfile").read_text(), re.MULTILINE | re.IGNORECASE))
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    names |= {services[name]["image"] for name in ("postgres", "redis")}
    wanted = {}
    for name in sorted(names):
        kind = name.split(":")[0].split("/")[-1]
        if kind not in STAND_INS:
            raise PodmanError(f"no local stand-in for the image {name!r} (tests/deploy/images/)")
        wanted[_qualified(name)] = STAND_INS[kind]
    return wanted


def _qualified(name: str) -> str:
    return name if "/" in name.split(":")[0] and "." in name.split("/")[0] else f"docker.io/library/{name}"


def ensure_base_images(env: dict[str, str], log: Callable[[str], None]) -> None:
    stale: list[str] = []  # images replaced by a new recipe: removed once nothing is built on them
    debian = ensure_debian(env, log, stale)
    for tag, kind in referenced_images().items():
        ensure_stand_in(kind, tag, debian, env, log, stale)
    for image_id in reversed(stale):
        run(["podman", "rmi", image_id], env, check=False)


def _image_id(image: str, env: dict[str, str]) -> list[str]:
    result = run(["podman", "image", "inspect", "--format", "{{.Id}}", image], env, check=False)
    return result.stdout.split() if result.returncode == 0 else []


# ---- a compose project ------------------------------------------------------------------------------


class Compose:
    """podman-compose on the repository's docker-compose.yml (plus the test's override), as one
    project; `down()` removes its containers, pod, network and (with volumes=True) volumes."""

    def __init__(self, project: str, files: Iterable[Path], env: dict[str, str]) -> None:
        self.project = project
        self.files = list(files)
        self.env = env
        found = shutil.which("podman-compose") or str(Path(sys.executable).parent / "podman-compose")
        self.command = [found, "-p", project, *(a for f in self.files for a in ("-f", str(f)))]

    def __call__(self, *args: str, timeout: float = 900, check: bool = True) -> subprocess.CompletedProcess[str]:
        return run([*self.command, *args], self.env, timeout=timeout, check=check)

    def container(self, service: str) -> str:
        names = self.containers(service)
        if not names:
            raise PodmanError(f"no container of service {service!r} in project {self.project}")
        return names[0]

    def containers(self, service: str | None = None) -> list[str]:
        filters = ["--filter", f"label=io.podman.compose.project={self.project}"]
        if service:
            filters += ["--filter", f"label=io.podman.compose.service={service}"]
        out = run(["podman", "ps", "-a", *filters, "--format", "{{.Names}}"], self.env).stdout
        return out.split()

    def logs(self, service: str, tail: int = 80) -> str:
        names = self.containers(service)
        if not names:
            return f"(no container of {service})"
        result = run(["podman", "logs", "--tail", str(tail), names[0]], self.env, check=False)
        return f"--- podman logs {names[0]} (last {tail} lines)\n{result.stdout}{result.stderr}"

    def exec(self, service: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return run(["podman", "exec", self.container(service), *args], self.env, check=check, timeout=300)

    def wait_healthy(self, service: str, timeout: float) -> float:
        """Poll `podman healthcheck run` (podman runs no checks by itself without systemd) until the
        service is healthy; fail with its logs. Returns the seconds it took."""
        start = time.monotonic()
        last = ""
        while time.monotonic() - start < timeout:
            name = self.container(service)
            state = run(["podman", "inspect", "--format", "{{.State.Status}}", name], self.env, check=False)
            if state.stdout.strip() in ("exited", "stopped", "dead"):
                raise PodmanError(f"{service} is {state.stdout.strip()}, not running\n{self.logs(service)}")
            result = run(["podman", "healthcheck", "run", name], self.env, check=False, timeout=60)
            if result.returncode == 0:
                return time.monotonic() - start
            last = (result.stdout + result.stderr).strip()
            time.sleep(2)
        raise PodmanError(f"{service} not healthy after {timeout:.0f}s (last check: {last})\n{self.logs(service)}")

    def wait_exit(self, service: str, timeout: float) -> int:
        name = self.container(service)
        result = run(["podman", "wait", name], self.env, timeout=timeout)
        return int(result.stdout.strip().splitlines()[-1])

    def down(self, volumes: bool = False) -> None:
        self("down", *(["-v"] if volumes else []), "-t", "30", timeout=300, check=False)
