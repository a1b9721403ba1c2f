import numpy as np

from segstudio.edit import maskops, regions


def test_flood_fill_connectivity():
    d = np.full((4, 4), 255, np.uint8)
    d[[0, 1, 2, 3], [0, 1, 2, 3]] = 1                        # a diagonal line
    assert regions.flood_fill(d, 0, 0, 4).area == 1
    assert regions.flood_fill(d, 0, 0, 8).area == 4
    m = np.full((10, 10), 255, np.uint8)
    m[:, 5] = 1                      # a wall ...
    m[5, 5] = 255                    # ... with a gap
    assert regions.flood_fill(m, 0, 0, 4).area == 100 - 9   # the gap joins both sides
    m[5, 5] = 1
    left = regions.flood_fill(m, 0, 0, 4)
    assert left.area == 50 and left.rect.x1 == 5


def test_polygon_and_rectangle():
    tri = regions.polygon((50, 50), [(10, 10), (10, 40), (40, 10)])
    assert 400 < tri.area < 520
    rect = regions.rectangle((50, 50), (5, 40), (9, 30))
    assert rect.rect.height == 5 and rect.rect.width == 11 and rect.region.all()


def test_magic_wand_tolerance(rng):
    img = np.zeros((60, 60), np.uint8)
    img[10:30, 10:30] = 100
    img[15, 15] = 108
    assert regions.magic_wand(img, 20, 20, 10).area == 400
    assert regions.magic_wand(img, 20, 20, 5).area == 399


def test_grabcut_finds_a_bright_disk(rng):
    import cv2
    img = (rng.normal(40, 5, (120, 120))).clip(0, 255).astype(np.uint8)
    cv2.circle(img, (60, 60), 25, 200, -1)
    p = regions.grabcut(img, (25, 25), (95, 95))
    truth = np.zeros((120, 120), bool)
    cv2.circle(truth.view(np.uint8), (60, 60), 25, 1, -1)
    got = np.zeros((120, 120), bool)
    got[p.rect.slices] = p.region
    assert (got & truth).sum() / (got | truth).sum() > 0.85


def test_grabcut_seeds_separate_two_touching_disks(rng):
    """A background seed on the second disk of the same colour takes it out of the answer."""
    import cv2
    img = (rng.normal(40, 5, (120, 160))).clip(0, 255).astype(np.uint8)
    cv2.circle(img, (55, 60), 22, 200, -1)
    cv2.circle(img, (100, 60), 22, 200, -1)
    box = ((30, 25), (90, 130))
    plain = regions.grabcut(img, *box)
    seeded = regions.grabcut(img, *box, fg_seeds=[(60, 55)], bg_seeds=[(60, 100), (60, 112)],
                             seed_radius=4)

    def right_share(p):
        got = np.zeros(img.shape, bool)
        got[p.rect.slices] = p.region
        return got[40:80, 95:110].mean(), got[45:75, 45:65].mean()

    assert right_share(plain)[0] > 0.9             # both disks look like foreground
    right, left = right_share(seeded)
    assert right < 0.2 and left > 0.9


def test_watershed_splits_at_the_edge():
    img = np.zeros((100, 100), np.uint8)
    img[:, 50:] = 200
    p = regions.watershed(img, fg_seeds=[(50, 75)], bg_seeds=[(50, 20)])
    got = np.zeros((100, 100), bool)
    got[p.rect.slices] = p.region
    assert got[:, 55:].mean() > 0.95 and got[:, :45].mean() < 0.05


def test_threshold_in_box():
    img = np.zeros((40, 40), np.uint16)
    img[10:20, 10:20] = 3000
    p = regions.threshold(img, (5, 5), (30, 30))
    assert p.area == 100
    assert regions.threshold(img, (5, 5), (30, 30), bright=False).area == 26 * 26 - 100


def test_mask_operations():
    m = np.zeros((30, 30), np.uint8)
    m[5:15, 5:15] = 1
    m[9, 9] = 0                              # a hole
    m[25, 25] = 1                            # an island
    filled = maskops.fill_holes(m, 1)
    assert filled[9, 9] == 1 and filled[0, 0] == 0
    cleaned = maskops.remove_islands(m, 1, 5)
    assert cleaned[25, 25] == 0 and cleaned[6, 6] == 1
    grown = maskops.dilate(m, 1, 2)
    assert grown[5:15, 3].all() and grown[0, 0] == 0
    shrunk = maskops.erode(m, 1, 1)
    assert shrunk[5, 5] == 0 and shrunk[7, 7] == 1
    m2 = np.full((4, 4), 255, np.uint8)
    assert (maskops.unlabeled_to_background(m2) == 0).all()
    assert maskops.clear_class(m, 7) is None
    assert (maskops.clear_class(m, 1) != 1).all()
