"""Greedy episodes as MP4 files (`drlmpi eval RUN --video DIR`): one frame per agent step, the screen the action
was chosen on, so an episode of L steps is L frames. Classic control and other gymnasium envs: their own
`rgb_array` render; Atari: the newest frame of the stack (what the agent sees, 84x84 grey) scaled x2; MinAtar: the
grid's channels in colour, scaled x16. Needs the `video` extra (imageio with its ffmpeg wheel)."""

from pathlib import Path

import numpy as np

from drlmpi.envs import is_atari, is_minatar
from drlmpi.errors import UserError, invariant

FPS = 30
SCALE = {"atari": 2, "minatar": 16}  # pixels per observation pixel (even sizes: H.264 needs them)


def imageio():
    """imageio's v2 API, with its ffmpeg binary; one-line UserError where the extra is missing."""
    try:
        import imageio.v2 as iio
        import imageio_ffmpeg  # noqa: F401 - the encoder's binary
    except ImportError as e:
        raise UserError(f"--video needs imageio and imageio-ffmpeg (pip install 'drlmpi[video]'): {e}") from None
    return iio


def upscale(rgb: np.ndarray, k: int) -> np.ndarray:
    """[H, W, 3] -> [k H, k W, 3], each pixel a k x k block."""
    return np.repeat(np.repeat(rgb, k, axis=0), k, axis=1)


def minatar_rgb(grid: np.ndarray) -> np.ndarray:
    """bool [C, H, W] -> uint8 [H, W, 3]: black where no channel is set, else the colour of the highest set one."""
    from matplotlib import colormaps

    palette = np.vstack([[0, 0, 0], colormaps["tab10"](np.arange(grid.shape[0]) % 10)[:, :3] * 255])
    index = (grid * np.arange(1, grid.shape[0] + 1)[:, None, None]).max(axis=0)
    return palette[index].astype(np.uint8)


class Recorder:
    """Collects the frames of env 0 of a one-env vector `vec` (set before the first `see(obs)`, called before each
    step) and writes each finished episode (`ended(ret)`) to `<out>/episode-<k>.mp4`; `cut()` drops an episode an
    env failure cut short."""

    def __init__(self, out: str, env_id: str):
        self.out, self.env_id, self.vec, self.iio = Path(out), env_id, None, imageio()
        self.out.mkdir(parents=True, exist_ok=True)
        self.frames: list[np.ndarray] = []
        self.files: list[dict] = []

    def frame(self, obs: np.ndarray) -> np.ndarray:
        if is_atari(self.env_id):
            return upscale(np.repeat(obs[0, -1][:, :, None], 3, axis=2), SCALE["atari"])
        if is_minatar(self.env_id):
            return upscale(minatar_rgb(obs[0]), SCALE["minatar"])
        return np.asarray(self.vec.env.render()[0], np.uint8)

    def see(self, obs: np.ndarray) -> None:
        self.frames.append(self.frame(obs))

    def cut(self) -> None:
        self.frames = []

    def ended(self, ret: float, length: int) -> None:
        """Write the episode that just ended (`length` steps: as many frames as were seen)."""
        invariant(len(self.frames) == length, f"{len(self.frames)} frames seen for an episode of {length} steps")
        path = self.out / f"episode-{len(self.files)}.mp4"
        with self.iio.get_writer(path, fps=FPS, codec="libx264", macro_block_size=1, quality=7) as writer:
            for f in self.frames:
                writer.append_data(f)
        self.files.append({"file": str(path), "frames": len(self.frames), "steps": length, "return": ret})
        self.frames = []
