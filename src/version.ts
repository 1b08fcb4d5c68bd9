// Baked in by build.ts (`--define`); a source run reads the environment instead.
export const BUILD_TAG: string =
  process.env.COMPUTE_CTL_BUILD_TAG || process.env.BUILD_TAG || "latest";
export const VERSION: string = process.env.COMPUTE_CTL_VERSION || "0.1.0-dev";
