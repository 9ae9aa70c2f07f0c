from django.apps import AppConfig


class SyncerConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "syncer"
    verbose_name = "Sync engine"

    def ready(self) -> None:
        from django_q.signals import post_spawn

        from syncer.recovery import on_worker_spawn

        post_spawn.connect(on_worker_spawn, dispatch_uid="syncer-resume-stale-runs")
