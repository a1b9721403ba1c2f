"""Models, training, prediction. torch is imported here and nowhere at start-up; never Qt."""
