from segstudio.core.names import slug


def test_slug_is_ascii_file_safe_and_bounded():
    assert slug("Zellkern é 01") == "Zellkern_e_01"
    assert slug("../a b/c") == "a_b_c"
    assert slug("???") == "image" and slug("", fallback="x") == "x"
    assert len(slug("a" * 200)) == 80
