/** The browser bundle's entry: everything the package exports, as `window.Switchboard`. */
export * from "./index.js";
