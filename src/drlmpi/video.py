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
    """Streams the frames of env 0 of a one-env vector `vec` (set before the first `see(obs)`, called before each
    step) into `<out>/episode-<k>.mp4` (no episode is held in memory), closed by `ended(ret, length)`; `cut()`
    deletes an episode an env failure cut short."""

    def __init__(self, out: str, env_id: str):
        self.out, self.env_id, self.vec, self.iio = Path(out), env_id, None, imageio()
        self.out.mkdir(parents=True, exist_ok=True)
        self.writer, self.frames = None, 0
        self.files: list[dict] = []

    @property
    def path(self) -> Path:
        return self.out / f"episode-{len(self.files)}.mp4"

    def frame(self, obs: np.ndarray) -> np.ndarray:
        if is_atari(self.env_id):
            return upscale(np.repeat(obs[0, -1][:, :, None], 3, axis=2), SCALE["atari"])
        if is_minatar(self.env_id):
            return upscale(minatar_rgb(obs[0]), SCALE["minatar"])
        return np.asarray(self.vec.env.render()[0], np.uint8)

    def see(self, obs: np.ndarray) -> None:
        if self.writer is None:
            self.writer = self.iio.get_writer(self.path, fps=FPS, codec="libx264", macro_block_size=1, quality=7)
        frame = self.frame(obs)
        h, w = frame.shape[:2]
        self.writer.append_data(np.pad(frame, ((0, h % 2), (0, w % 2), (0, 0))))  # (H.264 wants even sizes)
        self.frames += 1

    def cut(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.path.unlink(missing_ok=True)
        self.writer, self.frames = None, 0

    def ended(self, ret: float, length: int) -> None:
        """Close the episode that just ended (`length` steps: as many frames as were seen)."""
        invariant(self.writer is not None and self.frames == length,
                  f"{self.frames} frames seen for an episode of {length} steps")
        self.writer.close()
        self.files.append({"file": str(self.path), "frames": self.frames, "steps": length, "return": ret})
        self.writer, self.frames = None, 0
