"""The simulator's command line: one flag per ``CohortParams`` field, with its default from there."""

import dataclasses

import pytest

from strokefc_sim.cli import build_parser, flag
from strokefc_sim.params import CohortParams


def test_every_field_is_a_flag_whose_default_is_the_fields():
    parser = build_parser()
    args = parser.parse_args(["out"])
    options = {a.dest: a for a in parser._actions}
    for field in dataclasses.fields(CohortParams):
        assert flag(field.name) in options[field.name].option_strings
        assert getattr(args, field.name) == field.default
    assert CohortParams(**{f.name: getattr(args, f.name) for f in dataclasses.fields(CohortParams)}) == (
        CohortParams()
    )


def test_flags_parse_to_the_fields_types():
    args = build_parser().parse_args(["out", "--voxel-size", "2", "--tr", "1", "--lesion-size-by-class"])
    assert (args.resolution, args.tr, args.lesion_size_by_class) == (2, 1.0, True)
    assert isinstance(args.tr, float)


@pytest.mark.parametrize(("field", "value"), [("lesion_form", "mni"), ("resolution", 3)])
def test_unwritable_settings_stop_with_the_flag_named(field, value):
    with pytest.raises(SystemExit, match=flag(field)):
        dataclasses.replace(CohortParams(), **{field: value}).check()
