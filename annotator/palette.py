"""The category colour palette (no imports: the project store and the GUI both use it).

Kenneth Kelly's colours of maximum contrast (J. Opt. Soc. Am. 1965; white and black left out), in
his order: neighbours in the list are as different as possible, so the first classes of a project
never look alike. Category ``id`` picks ``PALETTE[id % len]``; new categories store their colour
from here (``Project.add_category``). Panels show them as swatches beside black text, so pale ones
stay readable on white.
"""

RGB = tuple[int, int, int]

PALETTE: tuple[RGB, ...] = (
    (243, 195, 0), (135, 86, 146), (243, 132, 0), (161, 202, 241), (190, 0, 50), (194, 178, 128),
    (132, 132, 130), (0, 136, 86), (230, 143, 172), (0, 103, 165), (249, 147, 121), (96, 78, 151),
    (246, 166, 0), (179, 68, 108), (220, 211, 0), (136, 45, 23), (141, 182, 0), (101, 69, 34),
    (226, 88, 34), (43, 61, 38),
)


def hex_color(rgb: RGB) -> str:
    """``(r, g, b)`` -> ``"#rrggbb"``."""
    return "#{:02x}{:02x}{:02x}".format(*rgb)
