"""Walk through the Scipion GUI of a finished gmmplugin project, as a user
would, under an X server: the project window, the form of every gmmplugin
protocol, and every entry of every viewer of every finished gmmplugin run
(plot windows, message windows). Each window is captured as a PNG.

Run by ``test_gui.py`` as ``python -O gui_walk.py PROJECT_PATH SHOTS_DIR RESULT.json``
with DISPLAY set; writes RESULT.json: {"windows": [...], "errors": [...]}.
"""
import json
import os
import sys
import traceback

PAUSE_MS = 700          # time for a window to be mapped and drawn before its capture


def _show_without_nested_loop():
    """Scipion's child windows (forms, viewer forms) enter a nested Tk mainloop
    in ``Window.show``; the walk drives the one main loop itself, so a child
    window is only placed and mapped."""
    from pyworkflow.gui import gui
    show = gui.Window.show

    def place(window, center=True, modal=False):
        if window.master is None or modal:
            return show(window, center, modal)
        if center:
            gui.centerWindows(window.root, dim=window.desiredDimensions(),
                              refWindows=window.master.getRoot())
        window.root.deiconify()
        window.root.focus_set()
    gui.Window.show = place


class Walk:
    def __init__(self, project_path, shots, result_path):
        from pyworkflow.gui.project import ProjectWindow
        _show_without_nested_loop()
        self.window = ProjectWindow(project_path)
        self.root = self.window.root
        self.project = self.window.project
        self.shots, self.result_path = shots, result_path
        self.result = {"windows": [], "errors": []}
        self.root.report_callback_exception = self._tk_error
        os.makedirs(shots, exist_ok=True)

    def _tk_error(self, exc, value, tb):
        self.result["errors"].append("".join(traceback.format_exception(exc, value, tb)))

    def capture(self, name, widget):
        """Save a PNG of ``widget``'s window and record that it was on screen."""
        from PIL import ImageGrab
        widget.update()
        x, y = widget.winfo_rootx(), widget.winfo_rooty()
        w, h = widget.winfo_width(), widget.winfo_height()
        image = ImageGrab.grab(bbox=(x, y, x + w, y + h), xdisplay=os.environ["DISPLAY"])
        path = os.path.join(self.shots, "%02d_%s.png" % (len(self.result["windows"]), name))
        image.save(path)
        colours = image.getcolors(1 << 20)
        self.result["windows"].append({"name": name, "png": path, "size": [w, h],
                                       "mapped": bool(widget.winfo_ismapped()),
                                       "colours": len(colours) if colours else 1 << 20})

    def _open_tree_path(self, path):
        """Unfold the protocol tree along ``path`` (section texts) and return the
        texts of the items under its end, as the user sees them."""
        from tkinter import ttk
        todo, trees = [self.root], []
        while todo:
            w = todo.pop()
            trees += [c for c in w.winfo_children() if isinstance(c, ttk.Treeview)]
            todo += w.winfo_children()
        for tree in trees:
            item = ""
            for text in path:
                match = [i for i in tree.get_children(item)
                         if str(tree.item(i, "text")).strip() == text]
                if not match:
                    break
                item = match[0]
                tree.item(item, open=True)
            else:
                tree.see(item)
                return [str(tree.item(i, "text")).strip() for i in tree.get_children(item)]
        return []

    def _toplevels(self):
        found, todo = [], [self.root]
        while todo:
            w = todo.pop()
            for child in w.winfo_children():
                if child.winfo_class() == "Toplevel":
                    found.append(child)
                todo.append(child)
        return found

    def _close_new_toplevels(self, before, name):
        """Capture and close the windows that appeared since ``before``."""
        for i, top in enumerate(t for t in self._toplevels() if t not in before):
            self.capture("%s_%d" % (name, i), top)
            top.destroy()

    # -- the walk ---------------------------------------------------------------------
    def steps(self):
        """A generator of pauses (ms); the Tk loop resumes it after each one."""
        yield 2 * PAUSE_MS
        self.capture("project_window", self.root)
        self.result["tree"] = self._open_tree_path(
            ("Protocols SPA", "3D", "Analysis", "Heterogeneity"))
        yield PAUSE_MS
        self.capture("protocol_tree", self.root)
        yield from self._forms()
        yield from self._viewers()

    def _forms(self):
        from pyworkflow.gui.form import FormWindow
        from gmmplugin.tests.test_protocol_tree import PIPELINE
        import gmmplugin.protocols as protocols
        for name in PIPELINE:
            prot = self.project.newProtocol(getattr(protocols, name))
            form = FormWindow("Protocol Run: " + name, prot, lambda *a, **k: None,
                              self.window)
            form.show(center=True)
            yield PAUSE_MS
            self.capture("form_" + name, form.root)
            for book in self._notebooks(form.root):           # every other section
                for tab in book.tabs()[1:]:
                    book.select(tab)
                    yield PAUSE_MS
                    label = book.tab(tab, "text").strip().replace(" ", "_")
                    self.capture("form_%s_%s" % (name, label), form.root)
                book.select(book.tabs()[0])
            if name == "GmmProtSelectLatent":
                yield from self._selection_wizard(prot, form)
            form.close()

    def _notebooks(self, widget):
        """The section notebooks (ttk.Notebook) inside ``widget``."""
        from tkinter import ttk
        found = [widget] if isinstance(widget, ttk.Notebook) else []
        for child in widget.winfo_children():
            found += self._notebooks(child)
        return found

    def _selection_wizard(self, prot, form):
        """The polygon wizard of the selection form, on the analysis's particles:
        a polygon drawn, the GMM decoded at a clicked point, the result applied."""
        from gmmplugin.wizards import GmmLatentSelectionWizard
        analysis = [r for r in self.project.getRuns()
                    if r.getClassName() == "GmmProtAnalyze" and r.isFinished()]
        if not analysis:
            return
        prot.inputParticles.set(analysis[0])
        prot.inputParticles.setExtended("Particles")
        window = GmmLatentSelectionWizard().show(form)
        yield PAUSE_MS
        centre = window.zred.mean(0)
        spread = window.zred.std(0)
        window._polygon_done([centre - spread, centre + [spread[0], -spread[1]],
                              centre + spread])
        in_polygon = int(window.selected().sum())
        window.toggle_class_at(*window.zred[0])            # a shift-click on a particle
        vol = window.decode_at(*centre)
        yield PAUSE_MS
        self.capture("wizard_latent_selection", window.top)
        self.result["wizard"] = {"in_polygon": in_polygon,
                                 "selected": int(window.selected().sum()),
                                 "decoded": vol is not None, "status": window.status.get()}
        window.apply()
        self.result["wizard"]["polygons"] = form.widgetDict["polygons"].get()
        self.result["wizard"]["classes"] = form.widgetDict["classIds"].get()

    def _viewers(self):
        from pwem import Domain
        from pyworkflow.viewer import DESKTOP_TKINTER
        for run in self.project.getRuns():
            if not (run.getClassName().startswith("GmmProt") and run.isFinished()):
                continue
            for viewer_cls in Domain.findViewers(run, DESKTOP_TKINTER):
                if viewer_cls.__module__.startswith("gmmplugin"):
                    yield from self._viewer(viewer_cls, run)

    def _viewer(self, viewer_cls, run):
        import matplotlib.pyplot as plt
        from pyworkflow.viewer import MessageView
        viewer = viewer_cls(project=self.project, protocol=run)
        viewer.visualize(run, windows=self.window)
        yield PAUSE_MS
        tag = "%s_%s" % (viewer_cls.__name__, run.getObjId())
        self.capture("viewer_" + tag, viewer.formWindow.root)
        for key, entry in viewer._getVisualizeDict().items():
            name = "%s_%s" % (tag, key)
            try:
                views = entry(key)
            except Exception:
                self.result["errors"].append("%s: %s" % (name, traceback.format_exc()))
                continue
            if not views:
                self.result["errors"].append("%s showed nothing" % name)
            for i, view in enumerate(views):
                before = self._toplevels()
                if isinstance(view, MessageView):
                    self.result.setdefault("messages", []).append(
                        {"entry": name, "type": view._msgType, "text": view.getMessage()})
                    # a message window is modal: capture and close it from the Tk loop
                    self.root.after(PAUSE_MS, self._close_new_toplevels, before,
                                    "%s_%d" % (name, i))
                    view.show()
                    continue
                view.show()
                yield PAUSE_MS
                if getattr(view, "window", None) is not None:      # a latent window
                    view.window.decode_at(*view.window.zred.mean(0))
                    yield PAUSE_MS
                figure = view.getFigure() if hasattr(view, "getFigure") else None
                window = getattr(getattr(figure, "canvas", None), "manager", None)
                if window is not None and getattr(window, "window", None) is not None:
                    # matplotlib's Tk windows live in an interpreter of their own
                    self.capture("%s_%d" % (name, i), window.window)
                self._close_new_toplevels(before, "%s_%d" % (name, i))
                if figure is not None:
                    plt.close(figure)
        viewer.formWindow.close()

    def run(self):
        walk = self.steps()

        def tick():
            try:
                self.root.after(next(walk), tick)
            except StopIteration:
                self.finish()
            except Exception:
                self.result["errors"].append(traceback.format_exc())
                self.finish()

        self.root.after(PAUSE_MS, tick)
        self.window.show()

    def finish(self):
        with open(self.result_path, "w") as f:
            json.dump(self.result, f, indent=1)
        self.root.quit()


if __name__ == "__main__":
    import runpy
    here = os.path.dirname(os.path.abspath(__file__))
    runpy.run_path(os.path.join(here, "scipion_env.py"))["setup_environment"]()
    Walk(*sys.argv[1:4]).run()
