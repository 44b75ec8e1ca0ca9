//! PersistentVolume matching (upstream `pkg/controller/volume/persistentvolume` index and
//! `checkVolumeSatisfyClaim`), the one copy used by the PV binder and the scheduler's
//! VolumeBinding plugin.
