"""Text fields that keep keys in the order they were typed, however fast they arrive.

Textual inserts a typed character in the field's own ``_on_key``, but runs a bound key
(backspace, End, Tab, Enter…) only once its event has bubbled up to the app. A burst such as
``End, Backspace×4, 3, 0, 0`` (typing fast, a paste, a key macro, or any typing on a loaded
machine over SSH) was applied out of order: the digits landed before the deletions ran, and the
field was left ``30``, ``3`` or empty (issue 13, defect 7; Textual issue #6605). Keys typed
after a Tab went to the field being left, because the app forwards each key to whatever had
the focus when it read that key.

``OrderedKeys`` runs the bindings for a key inside the field, in its turn with the characters
around it, and hands a key that arrives after the focus has moved on to where the focus is now.
``reroute`` (called by the app) does the same for keys that were sent to a widget that is not a
field (a preset card, a list) just before a Tab moved the focus into a field.
"""

from __future__ import annotations

import weakref
from typing import Any

from textual import events
from textual.widgets import Input

# Keys a field has already had its turn at: when one bubbles on to the app, it is the app's.
_PASSED_ON: weakref.WeakSet[events.Event] = weakref.WeakSet()


def reroute(app: Any, event: events.Key | events.Paste) -> bool:
    """Send ``event``, which reached the app without passing through the focused field, to that
    field (its bindings then run there, in order with what was typed around it). True if sent."""
    focused = app.focused
    if not isinstance(focused, OrderedKeys) or event in _PASSED_ON:
        return False
    if isinstance(event, events.Key):
        focused._forward_event(events.Key(event.key, event.character))
    else:
        focused._forward_event(events.Paste(event.text))
    return True


class OrderedKeys:
    """Mix into a text widget (Input, TextArea) ahead of it: ``class F(OrderedKeys, Input)``."""

    async def _on_key(self, event: events.Key) -> None:
        widget = self  # the widget this is mixed into
        app = widget.app  # type: ignore[attr-defined]
        focused = app.focused
        if focused is not None and focused is not widget:
            # An earlier key (Tab, a key that opened a dialog) moved the focus after the app had
            # already sent this one here: it was typed for the widget that has the focus now.
            event.stop()
            event.prevent_default()
            focused._forward_event(events.Key(event.key, event.character))
            return
        if event.is_printable:
            return  # the widget inserts it, in order
        # The same binding chain the app would run once the key had bubbled up (priority bindings
        # already ran before the key was sent here), run now so it keeps its place in the burst.
        if await app._check_bindings(event.key):
            event.stop()
            event.prevent_default()
        else:
            _PASSED_ON.add(event)  # no binding wants it: on to the widget, then the app

    async def _on_paste(self, event: events.Paste) -> None:
        widget = self
        focused = widget.app.focused  # type: ignore[attr-defined]
        if focused is not None and focused is not widget:
            event.stop()
            event.prevent_default()
            focused._forward_event(events.Paste(event.text))
        else:
            _PASSED_ON.add(event)


class Field(OrderedKeys, Input):
    """A one-line text field (a Textual Input) that never reorders or misplaces typed keys."""
