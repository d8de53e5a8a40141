"""The delivery lifecycle: the observers and their outcome vocabulary (``observers``), and the Request mixin that announces each delivery (``request``)."""
