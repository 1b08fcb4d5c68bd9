// The startup pipeline (upstream start_compute). Not built yet: this build
// reports that plainly instead of pretending, and the compute ends in `failed`
// with this message in /status, as any startup failure does.
import type { ComputeNode, StartedCompute } from "../compute.ts";
import { ComputeCtlError } from "../errors.ts";
import type { ParsedSpec } from "../spec/parsed-spec.ts";

export async function startCompute(
  _node: ComputeNode,
  _pspec: ParsedSpec,
): Promise<StartedCompute> {
  throw new ComputeCtlError("the startup pipeline is not implemented in this build yet");
}
