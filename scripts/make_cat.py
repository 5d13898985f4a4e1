"""Draw the cat silhouette used by ``CatConfig`` and write its two copies.

``src/jax_gen/assets/cat.png`` is the one the library reads (package data, so every installation
has it); ``assets/cat.png`` is the same image at the top of the repository.

A black cat sitting with its back to us, on a white background: a round head with two pointed
ears, a pear-shaped body with haunches, and a tail curling out to the right. Only the silhouette
matters, since the dataset is the set of dark pixels; shapes are drawn at 4x resolution and
downsampled so the outline is smooth rather than staircased.

Usage:
    python scripts/make_cat.py [--output PATH ...] [--size PIXELS]
"""

import argparse
import math
from pathlib import Path

from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUTPUTS = (ROOT / "src" / "jax_gen" / "assets" / "cat.png", ROOT / "assets" / "cat.png")
SUPERSAMPLE = 4

# Every shape is given in a unit square (x to the right, y down, (0, 0) the top-left corner) so
# the drawing does not depend on the output size.
HEAD = (0.31, 0.10, 0.63, 0.38)  # ellipse bounding box
LEFT_EAR = [(0.32, 0.24), (0.33, 0.02), (0.47, 0.14)]
RIGHT_EAR = [(0.47, 0.14), (0.61, 0.02), (0.62, 0.24)]
# Shoulders widening into the haunches, so the body reads as one pear rather than stacked balls.
TORSO = [(0.38, 0.30), (0.56, 0.30), (0.68, 0.66), (0.26, 0.66)]
HAUNCHES = (0.23, 0.44, 0.71, 0.94)
FEET = (0.27, 0.86, 0.67, 0.96)
# The tail is two thick circular arcs, each (centre, radius of the centre line, start and end
# angle in PIL's degrees: clockwise from +x, since y points down). The first leaves the body at
# the bottom and sweeps out and up; the second continues it and curls the tip outwards.
TAIL_ARCS = [
    ((0.66, 0.74), 0.16, 0, 90),
    ((0.89, 0.74), 0.07, 180, 320),
]
TAIL_WIDTH = 0.05


def _scaled(points, size: int):
    return [(x * size, y * size) for x, y in points]


def _box(box, size: int):
    x0, y0, x1, y1 = box
    return (x0 * size, y0 * size, x1 * size, y1 * size)


def draw_cat(size: int = 256) -> Image.Image:
    """A ``size`` x ``size`` greyscale ('L') image of a black cat silhouette on white."""
    big = size * SUPERSAMPLE
    image = Image.new("L", (big, big), color=255)
    draw = ImageDraw.Draw(image)
    black = 0

    draw.ellipse(_box(HEAD, big), fill=black)
    draw.polygon(_scaled(LEFT_EAR, big), fill=black)
    draw.polygon(_scaled(RIGHT_EAR, big), fill=black)
    draw.polygon(_scaled(TORSO, big), fill=black)
    draw.ellipse(_box(HAUNCHES, big), fill=black)
    draw.ellipse(_box(FEET, big), fill=black)

    # PIL strokes an arc inwards from its bounding box, so the box reaches half a stroke past
    # the centre line. Every arc end gets a round cap, so the joints have no notch and the tip
    # no sharp cut.
    width = TAIL_WIDTH * big
    for (cx, cy), radius, start, end in TAIL_ARCS:
        cx, cy, radius = cx * big, cy * big, radius * big
        outer = radius + width / 2
        box = (cx - outer, cy - outer, cx + outer, cy + outer)
        draw.arc(box, start, end, fill=black, width=round(width))
        for angle in (start, end):
            x = cx + radius * math.cos(math.radians(angle))
            y = cy + radius * math.sin(math.radians(angle))
            draw.ellipse((x - width / 2, y - width / 2, x + width / 2, y + width / 2), fill=black)

    return image.resize((size, size), Image.Resampling.LANCZOS)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--output",
        type=Path,
        action="append",
        help="PNG to write; repeat for several (default: both copies, packaged and top-level)",
    )
    parser.add_argument("--size", type=int, default=256, help="side of the square image")
    args = parser.parse_args()

    image = draw_cat(args.size)
    for output in args.output or DEFAULT_OUTPUTS:
        output.parent.mkdir(parents=True, exist_ok=True)
        image.save(output)
        print(f"wrote {output}")


if __name__ == "__main__":
    main()
