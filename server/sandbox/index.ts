/**
 * The sandbox layer's public surface. Other server layers import from here
 * (or, for the error class alone, from ./errors), never from the files
 * behind it: ESLint enforces that, so what is exported here is the contract.
 */
export {
  createDriver,
  detectCgroupMode,
  diskIoSupport,
  killCgroups,
  removeCgroupDirs,
  removeCgroupTrees,
  V1Driver,
  V2Driver,
  type CgroupMode,
} from './cgroups';
export { dirtyBoundSupported, loopControlStatus, mke2fsPath } from './disk';
export { SandboxError } from './errors';
export { Sandbox, helperFailure, type PtyOptions } from './handle';
export { FILE_MAX_UNBOUNDED, fileMaxNeeded } from './host-files';
export { buildImage, findImage, hostDistro, type ImageInfo } from './images';
export { nativeStatus, SandboxManager, type ManagerOptions } from './manager';
export {
  SANDBOX_ENV,
  type CreateOptions,
  type ExecOptions,
  type ExecResult,
  type JoinOptions,
  type Limits,
} from './options';
export { nsInode, processStartTime } from './proc';
export { initAlive, ownerAlive } from './reaper';
