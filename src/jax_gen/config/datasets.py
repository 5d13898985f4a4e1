"""Configs of the datasets: the built-in 2-D ones, the digits, and users' points and images."""

from dataclasses import dataclass

from jax_gen.config.base import (
    Validated,
    _check_ambient_dim,
    _check_non_negative,
    _check_positive,
    _check_silhouette,
)


@dataclass(frozen=True)
class CatConfig(Validated):
    """Cat silhouette: points drawn uniformly from the dark pixels of an image."""

    image_path: str = ""
    """Silhouette image; empty means the project's `assets/cat.png`."""
    scale: float = 3.0
    """Half-width of the point cloud after normalising the image to [-1, 1]."""
    threshold: int = 128
    """Pixels darker than this (0-255 grey level) belong to the cat."""
    ambient_dim: int = 2
    """Dimension D of the points: the 2-D data embedded by a fixed random orthonormal map."""

    def validate(self) -> None:
        _check_silhouette(self)


@dataclass(frozen=True)
class MoonConfig(Validated):
    """Two interleaved half circles (scikit-learn's two moons), centred and scaled."""

    noise: float = 0.05
    """Standard deviation of the Gaussian noise added before scaling."""
    scale: float = 3.0
    """Multiplier applied after centring."""
    ambient_dim: int = 2
    """Dimension D of the points: the 2-D data embedded by a fixed random orthonormal map."""

    def validate(self) -> None:
        _check_non_negative(self, "noise")
        _check_positive(self, "scale")
        _check_ambient_dim(self)


@dataclass(frozen=True)
class SwissRollConfig(Validated):
    """The 2-D swiss-roll spiral (columns 0 and 2 of scikit-learn's swiss roll)."""

    noise: float = 0.3
    """Standard deviation of the Gaussian noise added before scaling."""
    scale: float = 3.0
    """Half-width of the spiral after centring and normalising its radius to 1."""
    ambient_dim: int = 2
    """Dimension D of the points: the 2-D data embedded by a fixed random orthonormal map."""

    def validate(self) -> None:
        _check_non_negative(self, "noise")
        _check_positive(self, "scale")
        _check_ambient_dim(self)


@dataclass(frozen=True)
class GaussianMixtureConfig(Validated):
    """Four equally weighted Gaussians centred at (+-scale, +-scale)."""

    scale: float = 3.0
    """Distance of each centre from the axes."""
    std: float = 0.3
    """Standard deviation of every component."""
    ambient_dim: int = 2
    """Dimension D of the points: the 2-D data embedded by a fixed random orthonormal map."""

    def validate(self) -> None:
        _check_positive(self, "scale", "std")
        _check_ambient_dim(self)


@dataclass(frozen=True)
class EightGaussiansConfig(Validated):
    """Eight equally weighted Gaussians centred on a circle, torchcfm's ``8gaussians``.

    Component k (the label, k = 0..7) is N(radius (cos(k pi / 4), sin(k pi / 4)), std^2 I).
    torchcfm's ``sample_8gaussians`` is ``eight_normal_sample(n, 2, scale=5, var=0.1)``, which
    passes sqrt(var) I as the covariance matrix of torch's ``MultivariateNormal``: each
    component's covariance is sqrt(0.1) I, so its standard deviation is 0.1^(1/4) = 0.5623,
    not sqrt(0.1). The defaults are that distribution. The points reach about radius + 4 std
    (7.2 by default) from the origin.
    """

    radius: float = 5.0
    """Distance of every centre from the origin."""
    std: float = 0.1**0.25
    """Standard deviation of every component (0.1^(1/4) = 0.5623, as torchcfm draws them)."""
    ambient_dim: int = 2
    """Dimension D of the points: the 2-D data embedded by a fixed random orthonormal map."""

    def validate(self) -> None:
        _check_positive(self, "radius", "std")
        _check_ambient_dim(self)


@dataclass(frozen=True)
class SCurveConfig(Validated):
    """The S-curve (torchcfm's ``scurve``): columns 0 and 2 of scikit-learn's S-curve, times 1.5.

    ``sklearn.datasets.make_s_curve(noise=sigma)`` draws t uniform on [-3 pi / 2, 3 pi / 2] and
    puts the point at (sin t, sign(t) (cos t - 1)) + N(0, sigma^2 I) in those two columns; the
    points are that times `scale`. The curve is centred: E[sin t] = 0 and
    E[sign(t) (cos t - 1)] = 0, both integrands being odd in t. It spans [-1, 1] x [-2, 2]
    before scaling ([-1.5, 1.5] x [-3, 3] by default). No labels.
    """

    noise: float = 0.05
    """Standard deviation of the Gaussian noise added before scaling."""
    scale: float = 1.5
    """Multiplier applied to the noisy curve."""
    ambient_dim: int = 2
    """Dimension D of the points: the 2-D data embedded by a fixed random orthonormal map."""

    def validate(self) -> None:
        _check_non_negative(self, "noise")
        _check_positive(self, "scale")
        _check_ambient_dim(self)


MIXTURE_1D_WEIGHTS = (0.3, 0.2, 0.5)
"""The weights of the 1-D mixture's components, centred at -scale, 0 and +scale in that order."""


@dataclass(frozen=True)
class GaussianMixture1DConfig(Validated):
    """Three Gaussians on the line, at -scale, 0 and +scale, of weights 0.3, 0.2 and 0.5.

    One-dimensional data with a known density: the picture of a generative flow in the
    (t, x) plane (``plot-path``), and a test case where every figure has a closed form (in 1-D
    the sliced W2 is the exact W2).
    """

    scale: float = 3.0
    """Distance of the outer components' centres from 0."""
    std: float = 0.3
    """Standard deviation of every component."""

    def validate(self) -> None:
        _check_positive(self, "scale", "std")


@dataclass(frozen=True)
class DigitsConfig(Validated):
    """scikit-learn's 8x8 handwritten digits (1797 images, labels 0-9), bundled, no download.

    Each point is one image's 64 grey levels (0..16, row-major) scaled to [-1, 1]: 64-D data,
    not a 2-D dataset, so it has no ambient_dim and no plane to plot.
    """


POINTS_SUFFIXES = (".npy", ".csv")
"""File types of a points dataset: a NumPy array, or comma-separated text."""


@dataclass(frozen=True)
class PointsConfig(Validated):
    """Your own points: the empirical distribution of the rows of an N x D array in a file.

    The file is a `.npy` array or a `.csv` table (commas, one point per line, optionally one
    non-numeric header line) of N >= 1 rows and D >= 1 finite numbers. The points are
    normalised like the built-in datasets: the centre of their bounding box moves to the origin
    and one common factor (the aspect is kept) brings the longer half-extent to `scale`.
    Training draws rows uniformly with replacement, like the digits.

    The data dimension is the file's D: 2-D files are plotted, measured and drawn like the
    moons; one column is 1-D data, drawn as histograms and in the (t, x) plane like the 1-D
    mixture; larger D is trained, sampled and measured in full and plotted by its first two
    coordinates. There is no `ambient_dim` (the file fixes D; to embed 2-D points in R^D, write
    them into D columns), and no labels. The file is read when the data are first needed (the
    config does no I/O); the path is stored in checkpoints as given, so `generate` and
    `evaluate`, which draw fresh data, need the file at that path.
    """

    path: str = ""
    """The `.npy` or `.csv` file of points, one per row (required: pass --dataset.path FILE)."""
    scale: float = 3.0
    """Half-extent of the longer side of the points' bounding box after normalising."""

    def validate(self) -> None:
        _check_positive(self, "scale")
        if self.path and not self.path.lower().endswith(POINTS_SUFFIXES):
            raise ValueError(
                f"points file path={self.path!r} must end in {' or '.join(POINTS_SUFFIXES)}"
            )


@dataclass(frozen=True)
class ImageConfig(Validated):
    """Your own silhouette: points drawn uniformly from the dark pixels of any image.

    Exactly the cat's sampler and exact log-density, on the image at `path` (any format Pillow
    reads; a transparent background counts as white).
    """

    path: str = ""
    """Silhouette image: dark shapes on a light or transparent background (required: pass
    --dataset.path FILE)."""
    scale: float = 3.0
    """Half-width of the point cloud after normalising the image to [-1, 1]."""
    threshold: int = 128
    """Pixels darker than this (0-255 grey level) belong to the silhouette."""
    ambient_dim: int = 2
    """Dimension D of the points: the 2-D data embedded by a fixed random orthonormal map."""

    def validate(self) -> None:
        _check_silhouette(self)


DatasetConfig = (
    CatConfig
    | MoonConfig
    | SwissRollConfig
    | GaussianMixtureConfig
    | EightGaussiansConfig
    | SCurveConfig
    | GaussianMixture1DConfig
    | DigitsConfig
    | PointsConfig
    | ImageConfig
)
