// Starts the Control Center: loads the WebAssembly (its `main` mounts the app). A file of
// its own because the Content-Security-Policy allows no inline script.
import init from "./pryx.js";
init();
