"""Long lists a page at a time, newest first, as the verdict history shows them: a Find box for a
part of a name, a Page number once there is more than one page, and a caption saying how many
match and which page this is. The pages read one page of rows and a count, however many there
are (runs, jobs, models, verdicts)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import streamlit as st
from streamlit.delta_generator import DeltaGenerator

PAGE_ROWS = 20


@dataclass(frozen=True)
class Page:
    """Which page of a list of ``total`` rows is shown (``number`` of ``pages``, from 1)."""

    total: int
    number: int = 1
    pages: int = 1
    rows: int = PAGE_ROWS

    @property
    def offset(self) -> int:
        """How many rows, newest first, come before this page."""
        return (self.number - 1) * self.rows

    def caption(self, noun: str, *, narrowed: bool) -> str:
        """E.g. "26 verdicts; newest first (times in UTC), page 1 of 2." ("... match" when a
        filter narrows them); ``noun`` is one row's name ("verdict", "run")."""
        what = f"{self.total} {noun}{'s' if self.total != 1 else ''}" + (
            " match" if narrowed else ""
        )
        return f"{what}; newest first (times in UTC), page {self.number} of {self.pages}."


def page_of(total: int, key: str, *, rows: int = PAGE_ROWS) -> Page:
    """The page to show of ``total`` rows: a Page number box (``key``) when there are several;
    a number left beyond the last page (the list shrank) shows the last."""
    pages = max(1, math.ceil(total / rows))
    if pages == 1:
        return Page(total, rows=rows)
    number = int(st.number_input("Page", min_value=1, max_value=pages, value=1, key=key))
    return Page(total, min(number, pages), pages, rows)


def find_box(key: str, placeholder: str, help: str, *, column: DeltaGenerator | None = None) -> str:
    """A Find box (``key``): the text a list's names are searched for, stripped."""
    text = (column or st).text_input(
        "Find", key=key, max_chars=200, placeholder=placeholder, help=help
    )
    return text.strip()
