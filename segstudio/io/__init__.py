"""Files in and out: images, masks, projects, datasets. No Qt, no torch."""
