"""A checkbox and radio button whose state is in the glyph itself ("[x]", "(•)"), not only in its colour,
so they read in 16-colour terminals, without colour, and for colour-blind eyes."""

from __future__ import annotations

from textual.content import Content
from textual.widgets import Checkbox, RadioButton


class TextCheckbox(Checkbox):
    """A checkbox drawn as [x] / [ ]."""

    @property
    def _button(self) -> Content:
        return Content.assemble(("[x]" if self.value else "[ ]", self.get_visual_style("toggle--button")))


class TextRadioButton(RadioButton):
    """A radio button drawn as (•) / ( )."""

    @property
    def _button(self) -> Content:
        return Content.assemble(("(•)" if self.value else "( )", self.get_visual_style("toggle--button")))
