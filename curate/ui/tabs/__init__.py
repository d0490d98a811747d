"""The app's tabs, one module each (review, run, imports, overview, teachers, select, export), holding:

* its handlers, a class: plain methods that take component values (and, where the queue filter matters, one
  :class:`~curate.review.QueueFilter`) and return a ``dict`` of component name → value, so they are testable
  without a browser;
* ``layout(ui, settings)``: its components only, called inside ``gr.Blocks``;
* ``wire(ui, handlers, …)``: its events → its handlers.

:mod:`curate.ui` composes them in the order they are shown.
"""
