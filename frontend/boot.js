// Starts the Control Center: loads the WebAssembly (its `main` mounts the app over the
// static frame in index.html). A file of its own because the Content-Security-Policy
// allows no inline script.

// The theme chosen in Settings, before the first frame (no flash of the other one).
const theme = localStorage.getItem("pryx.theme");
if (theme === "light" || theme === "dark") document.documentElement.dataset.theme = theme;

// Tell the desktop shell when the first frame is on screen (it measures time to first
// paint). The app's code is imported after this runs, so the frame never waits for it.
const tellShell = (message) => { if (window.ipc) window.ipc.postMessage(message); };
requestAnimationFrame(() => requestAnimationFrame(() => tellShell("painted")));
import("./pryx.js").then((app) => app.default());
